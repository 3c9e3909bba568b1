"""Unit tests of serving/request_checks.py: tensor element counts and error scrubbing."""

from __future__ import annotations

import pytest
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.limits import Limits
from serving.request_checks import check_examples_cost, check_request_tensors, public_message
from serving.status import Code, ServingError, clip


def _tensor(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    return tensor


def test_elements_of_all_inputs_share_one_cap():
    small = _tensor(types_pb2.DT_FLOAT, [2, 3], float_val=[1.0])
    check_request_tensors([("a", small), ("b", small)], 12)
    with pytest.raises(ServingError, match="--max_request_elements") as raised:
        check_request_tensors([("a", small), ("b", small)], 11)
    assert raised.value.code == Code.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "tensor, why",
    [
        (_tensor(types_pb2.DT_FLOAT, [2**62, 2**62]), "--max_request_elements"),
        (_tensor(types_pb2.DT_FLOAT, [3], tensor_content=b"\0" * 8), "tensor_content has 8 bytes"),
        (_tensor(types_pb2.DT_STRING, [1], tensor_content=b"ab"), "tensor_content is not allowed"),
        (_tensor(types_pb2.DT_INT32, [1], int_val=[1, 2]), "2 values for a shape of 1"),
        (_tensor(types_pb2.DT_FLOAT, [-3]), "negative"),
    ],
)
def test_bad_tensor_protos_are_refused(tensor, why):
    with pytest.raises(ServingError, match=why):
        check_request_tensors([("x", tensor)], 1000)


def test_fewer_values_than_the_shape_are_fine():
    check_request_tensors([("x", _tensor(types_pb2.DT_FLOAT, [100]))], 100)
    check_request_tensors([("x", _tensor(types_pb2.DT_FLOAT, [4], tensor_content=b"\0" * 16))], 4)


def test_examples_with_context_are_sized_before_merging():
    context = example_pb2.Example()
    context.features.feature["x"].float_list.value.extend([0.5] * 100)  # 100 values, 410 bytes
    examples = [example_pb2.Example() for _ in range(10)]
    examples[0].features.feature["y"].int64_list.value.append(1)
    check_examples_cost(examples, context, Limits(max_request_elements=1001))
    with pytest.raises(ServingError, match="expand to 1001 values.*--max_request_elements"):
        check_examples_cost(examples, context, Limits(max_request_elements=1000))
    with pytest.raises(ServingError, match="bytes.*--max_request_bytes"):
        check_examples_cost(examples, context, Limits(max_request_bytes=4000))
    check_examples_cost(examples, None, Limits(max_request_elements=1))


def test_public_message_drops_stacks_and_paths():
    text = (
        "Graph execution error:\n\nDetected at node ParseExample defined at (most recent call last):\n"
        '  File "/usr/lib/python3.10/threading.py", line 973, in _bootstrap\n'
        "    self._bootstrap_inner()\n"
        '  File "/work/wt/x/serving/servable.py", line 90, in run\n'
        "Key: x.  Data types don't match. Data type: float but expected type: string\n"
        "\t [[{{node ParseExample}}]] [Op:__inference_signature_wrapper_123]"
    )
    message = public_message(text)
    assert "Data types don't match" in message and "ParseExample" in message
    assert "File" not in message and "/work" not in message and "/usr" not in message
    assert public_message("open failed: /home/me/secret/model.pb") == "open failed: model.pb"


def test_clip_echoes_a_bounded_prefix():
    assert clip("a" * 10) == "a" * 10
    assert clip("a" * 1000) == "a" * 256 + "..."
