"""Tests of serving.batching: merging, splitting, parameters and error isolation."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from serving import batching
from serving.batching import (
    QUEUE_FULL_MESSAGE,
    Batcher,
    BatchingParameters,
    pad_to,
    parse_batching_parameters,
)
from serving.status import Code, ServingError
from tests.serving_conftest_helpers import FIXTURES


def test_parse_batching_parameters():
    text = """
      max_batch_size { value: 32 }   # TF Serving's wrapper form
      batch_timeout_micros: 5000
      num_batch_threads { value: 2 }
    """
    assert parse_batching_parameters(text) == BatchingParameters(32, 5000, 2)
    assert parse_batching_parameters("") == BatchingParameters()


def test_tf_servings_own_batching_config_parses():
    text = (FIXTURES / "batching_config.txt").read_text()
    assert parse_batching_parameters(text) == BatchingParameters(
        max_batch_size=128, batch_timeout_micros=0, num_batch_threads=8, max_enqueued_batches=1000000
    )


def test_every_batching_parameters_field_is_accepted(caplog):
    text = """
      max_batch_size { value: 8 } batch_timeout_micros { value: 10 } max_enqueued_batches { value: 3 }
      num_batch_threads { value: 2 } thread_pool_name { value: "pool" }
      allowed_batch_sizes: 2 allowed_batch_sizes: 4
      pad_variable_length_inputs: true
      enable_large_batch_splitting { value: true } max_execution_batch_size { value: 4 }
    """
    batching._ignored_logged.clear()  # noqa: SLF001 - logged once per process
    with caplog.at_level("WARNING"):
        params = parse_batching_parameters(text)
    assert params == BatchingParameters(
        8,
        10,
        2,
        max_enqueued_batches=3,
        allowed_batch_sizes=(2, 4),
        pad_variable_length_inputs=True,
        enable_large_batch_splitting=True,
        max_execution_batch_size=4,
        thread_pool_name="pool",
    )
    assert params.execution_batch_size == 4
    assert "Batching parameter thread_pool_name is accepted and ignored" in caplog.text


@pytest.mark.parametrize(
    "text, wording",
    [
        ("max_batches { value: 3 }", 'has no field named "max_batches"'),
        ("max_batch_size { value: 0 }", "must be positive"),
        ("max_enqueued_batches { value: 0 }", "must be positive"),
        ("max_batch_size = 3", "Error parsing text-format tensorflow.serving.BatchingParameters"),
        ("max_batch_size: 4 allowed_batch_sizes: [2, 2, 4]", "must be monotonically increasing"),
        (
            "max_batch_size: 8 allowed_batch_sizes: [2, 4]",
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8",
        ),
        (
            "max_batch_size: 8 enable_large_batch_splitting: true max_execution_batch_size: 4 allowed_batch_sizes: [2]",
            "must be equal to max_execution_batch_size; last entry was 2; expected 4",
        ),
        (
            "max_batch_size: 4 enable_large_batch_splitting: true max_execution_batch_size: 8",
            "must be less than or equal to max_batch_size",
        ),
    ],
)
def test_parse_batching_parameters_errors(text, wording):
    with pytest.raises(ValueError, match=re.escape(wording)):
        parse_batching_parameters(text)


def run_concurrently(batcher: Batcher, requests: list[np.ndarray], run) -> list:
    """Sends the requests at once from one thread each; results (or exceptions) in order."""
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def client(i: int) -> None:
        barrier.wait()
        try:
            results[i] = batcher.run(("model", 1), {"x": requests[i]}, run)
        except Exception as e:  # noqa: BLE001 - recorded for the assertion
            results[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_requests_are_merged_and_split_back():
    batch_sizes = []

    def run(inputs):
        batch_sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2, "n": np.full(len(inputs["x"]), len(inputs["x"]))}

    batcher = Batcher(BatchingParameters(max_batch_size=64, batch_timeout_micros=200_000, num_batch_threads=1))
    try:
        requests = [np.full((i % 3 + 1, 2), i, np.float32) for i in range(8)]
        results = run_concurrently(batcher, requests, run)
    finally:
        batcher.close()
    for request, result in zip(requests, results):
        np.testing.assert_array_equal(result["y"], request * 2)
    assert sum(batch_sizes) == sum(len(r) for r in requests)
    assert len(batch_sizes) < len(requests), f"no merging happened: {batch_sizes}"


def test_max_batch_size_closes_a_batch():
    batch_sizes = []

    def run(inputs):
        batch_sizes.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=2_000_000, num_batch_threads=2))
    try:
        run_concurrently(batcher, [np.zeros((1, 1))] * 8, run)
    finally:
        batcher.close()
    assert max(batch_sizes) <= 4 and sum(batch_sizes) == 8


def test_one_failing_request_does_not_fail_the_others():
    def run(inputs):
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": inputs["x"] + 1}

    batcher = Batcher(BatchingParameters(max_batch_size=16, batch_timeout_micros=200_000))
    try:
        results = run_concurrently(batcher, [np.array([1.0]), np.array([-1.0]), np.array([2.0])], run)
    finally:
        batcher.close()
    np.testing.assert_array_equal(results[0]["y"], [2.0])
    assert isinstance(results[1], ValueError)
    np.testing.assert_array_equal(results[2]["y"], [3.0])


def test_unbatchable_inputs_run_directly():
    batcher = Batcher(BatchingParameters())
    try:
        out = batcher.run("k", {"x": np.float32(3)}, lambda inputs: {"y": inputs["x"] + 1})
    finally:
        batcher.close()
    assert out["y"] == 4


def test_full_queue_answers_unavailable_at_once():
    """max_enqueued_batches=1 with the only batch thread busy: the queue holds one waiting batch,
    and a request needing another is refused at once (TF Serving's message), not queued."""
    started, release = threading.Event(), threading.Event()

    def run(inputs):
        started.set()
        release.wait(30)
        return {"y": inputs["x"]}

    batcher = Batcher(BatchingParameters(max_batch_size=1, num_batch_threads=1, max_enqueued_batches=1))
    threads, results = [], {}
    try:

        def client(i):
            try:
                results[i] = batcher.run("k", {"x": np.array([float(i)])}, run)
            except ServingError as e:
                results[i] = e

        threads.append(threading.Thread(target=client, args=(0,)))
        threads[0].start()
        assert started.wait(30)  # request 0 runs and holds the batch thread
        threads.append(threading.Thread(target=client, args=(1,)))
        threads[1].start()
        deadline = threading.Event()
        while not batcher._queues or not any(q.waiting for q in batcher._queues.values()):  # noqa: SLF001
            deadline.wait(0.01)  # request 1's batch is enqueued behind it
        with pytest.raises(ServingError) as refused:
            batcher.run("k", {"x": np.array([2.0])}, run)
        assert refused.value.code == Code.UNAVAILABLE and refused.value.message == QUEUE_FULL_MESSAGE
    finally:
        release.set()
        for t in threads:
            t.join(30)
        batcher.close()
    np.testing.assert_array_equal(results[0]["y"], [0.0])
    np.testing.assert_array_equal(results[1]["y"], [1.0])


def test_a_batch_past_its_timeout_keeps_growing_while_every_batch_thread_is_busy():
    """As TF Serving's SharedBatchScheduler: a batch thread closes an expired batch only when it is
    free to run it, so requests that arrive meanwhile join that batch rather than queueing one
    small batch each behind the busy thread."""
    started, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def run(inputs):
        sizes.append(len(inputs["x"]))
        if len(sizes) == 1:
            started.set()
            release.wait(30)
        return {"y": inputs["x"] * 2}

    batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=1))
    results: dict[int, dict] = {}

    def client(i: int) -> None:
        results[i] = batcher.run("k", {"x": np.array([float(i)])}, run)

    threads = [threading.Thread(target=client, args=(0,))]
    try:
        threads[0].start()
        assert started.wait(30)  # request 0's batch holds the only batch thread
        for i in range(1, 5):
            threads.append(threading.Thread(target=client, args=(i,)))
            threads[-1].start()
            time.sleep(0.02)  # each arrives well after the previous one's 1 ms timeout
        release.set()
        for t in threads:
            t.join(30)
    finally:
        release.set()
        batcher.close()
    assert sizes == [1, 4]
    for i in range(5):
        np.testing.assert_array_equal(results[i]["y"], [2.0 * i])


def test_request_over_max_batch_size_is_refused():
    batcher = Batcher(BatchingParameters(max_batch_size=4))
    try:
        with pytest.raises(ServingError, match="Task size 5 is larger than maximum input batch size 4"):
            batcher.run("k", {"x": np.zeros((5, 1))}, lambda inputs: {"y": inputs["x"]})
    finally:
        batcher.close()


def test_batches_are_padded_to_the_next_allowed_size():
    seen = []

    def run(inputs):
        seen.append(inputs["x"].copy())
        return {"y": inputs["x"] * 10}

    batcher = Batcher(BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 8)))
    try:
        out = batcher.run("k", {"x": np.array([[1.0], [2.0], [3.0]])}, run)
    finally:
        batcher.close()
    np.testing.assert_array_equal(out["y"], [[10.0], [20.0], [30.0]])  # the padding row is cut off
    np.testing.assert_array_equal(seen[0], [[1.0], [2.0], [3.0], [1.0]])  # padded with the first row


def test_large_batches_are_split_into_execution_sized_batches():
    sizes = []

    def run(inputs):
        sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] + 1}

    batcher = Batcher(
        BatchingParameters(max_batch_size=10, enable_large_batch_splitting=True, max_execution_batch_size=4)
    )
    try:
        out = batcher.run("k", {"x": np.arange(10.0)}, run)
    finally:
        batcher.close()
    np.testing.assert_array_equal(out["y"], np.arange(10.0) + 1)
    assert sizes == [4, 4, 2]


def test_variable_length_inputs_are_padded_into_one_batch():
    shapes = []

    def run(inputs):
        shapes.append(inputs["x"].shape)
        return {"y": inputs["x"].sum(axis=1)}

    batcher = Batcher(
        BatchingParameters(max_batch_size=2, batch_timeout_micros=2_000_000, pad_variable_length_inputs=True)
    )
    try:
        results = run_concurrently(batcher, [np.array([[1, 2, 3]]), np.array([[5]])], run)
    finally:
        batcher.close()
    assert shapes == [(2, 3)]  # one batch; the short row padded with its first element
    assert sorted(int(r["y"][0]) for r in results) == [6, 15]


def test_pad_to_pads_strings_with_the_first_element():
    padded = pad_to(np.array([[b"a", b"b"]], dtype=object), (3,))
    assert padded.tolist() == [[b"a", b"b", b"a"]]


def _gather_on_a_loop(batcher: Batcher, requests: list[np.ndarray], run, timeouts: dict[int, float] | None = None):
    """Submits every request from coroutines of one event loop (as REST does); returns each
    result, exception, or "timeout" where `timeouts` gave that request up early."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    timeouts = timeouts or {}

    async def main():
        with ThreadPoolExecutor(1) as executor:

            async def one(i):
                try:
                    future = batcher.submit_async(("model", 1), {"x": requests[i]}, run, executor)
                    return await asyncio.wait_for(future, timeouts.get(i, 30))
                except asyncio.TimeoutError:
                    return "timeout"
                except Exception as e:  # noqa: BLE001 - recorded for the assertion
                    return e

            return await asyncio.gather(*(one(i) for i in range(len(requests))))

    return asyncio.run(main())


def test_requests_awaited_on_a_loop_are_merged_without_a_thread_each():
    """Eight coroutines on one loop (one thread) fill one batch and each gets its own rows."""
    batch_sizes, threads = [], set()

    def run(inputs):
        batch_sizes.append(len(inputs["x"]))
        threads.add(threading.current_thread().name)
        return {"y": inputs["x"] * 2}

    batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=10_000_000, num_batch_threads=1))
    try:
        requests = [np.full((1, 2), i, np.float32) for i in range(8)]
        results = _gather_on_a_loop(batcher, requests, run)
    finally:
        batcher.close()
    assert batch_sizes == [8]  # closed by size, long before the 10 s timeout
    assert all(name.startswith("batch") for name in threads)
    for request, result in zip(requests, results):
        np.testing.assert_array_equal(result["y"], request * 2)


def test_a_request_given_up_on_the_loop_does_not_disturb_its_batch():
    """One waiter times out before its batch runs; the batch still answers the others."""
    release = threading.Event()

    def run(inputs):
        release.wait(10)
        return {"y": inputs["x"] + 1}

    batcher = Batcher(BatchingParameters(max_batch_size=3, batch_timeout_micros=10_000_000, num_batch_threads=1))
    threading.Timer(0.5, release.set).start()
    try:
        results = _gather_on_a_loop(batcher, [np.array([1.0]), np.array([2.0]), np.array([3.0])], run, {1: 0.05})
    finally:
        batcher.close()
    np.testing.assert_array_equal(results[0]["y"], [2.0])
    assert results[1] == "timeout"
    np.testing.assert_array_equal(results[2]["y"], [4.0])


def test_loop_requests_split_into_execution_batches_and_failures_stay_their_own():
    def run(inputs):
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": inputs["x"] * 10}

    params = BatchingParameters(
        max_batch_size=8, batch_timeout_micros=1000, enable_large_batch_splitting=True, max_execution_batch_size=2
    )
    batcher = Batcher(params)
    try:
        big = np.arange(5, dtype=np.float32)
        results = _gather_on_a_loop(batcher, [big, np.array([-1.0], np.float32), np.zeros(9, np.float32)], run)
    finally:
        batcher.close()
    np.testing.assert_array_equal(results[0]["y"], big * 10)  # three pieces, joined in order
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], ServingError) and "Task size 9 is larger than maximum input batch size 8" in str(
        results[2]
    )
