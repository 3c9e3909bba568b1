"""Tests of serving.batching: merging, splitting, parameters and error isolation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from serving.batching import Batcher, BatchingParameters, parse_batching_parameters


def test_parse_batching_parameters():
    text = """
      max_batch_size { value: 32 }   # TF Serving's wrapper form
      batch_timeout_micros: 5000
      num_batch_threads { value: 2 }
    """
    assert parse_batching_parameters(text) == BatchingParameters(32, 5000, 2)
    assert parse_batching_parameters("") == BatchingParameters()


@pytest.mark.parametrize("text, wording", [
    ("max_enqueued_batches { value: 3 }", "Unsupported batching parameter"),
    ("max_batch_size { value: 0 }", "must be positive"),
    ("max_batch_size = 3", "Cannot parse"),
])
def test_parse_batching_parameters_errors(text, wording):
    with pytest.raises(ValueError, match=wording):
        parse_batching_parameters(text)


def run_concurrently(batcher: Batcher, requests: list[np.ndarray], run) -> list:
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

    batcher = Batcher(BatchingParameters(max_batch_size=64, batch_timeout_micros=200_000,
                                         num_batch_threads=1))
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

    batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=2_000_000,
                                         num_batch_threads=2))
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
