"""Hot reload: a new version pushed while clients keep sending requests, on the fixtures."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import requests

from serving.client import GrpcClient, RestClient
from serving.model_config import LoadRetries
from tests.serving_conftest_helpers import FIXTURES, serve_in_process, single_model_config

HALF_PLUS_TWO = FIXTURES / "saved_model_half_plus_two_cpu" / "00000123"
BATCHING = "max_batch_size { value: 8 } batch_timeout_micros { value: 2000 } num_batch_threads { value: 2 }"


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def versions(rest: RestClient) -> dict[str, str]:
    return {s["version"]: s["state"] for s in rest.status()["model_version_status"]}


@pytest.mark.parametrize("batching", [None, BATCHING], ids=["unbatched", "batched"])
def test_new_version_under_load_has_no_failed_requests(tmp_path, batching):
    base = tmp_path / "half_plus_two"
    shutil.copytree(HALF_PLUS_TWO, base / "1")
    config = single_model_config("hp2", base)
    with serve_in_process(
        config, poll_seconds=0.2, batching_parameters=batching, load_retries=LoadRetries(max_num_load_retries=0)
    ) as server:
        rest, grpc_client = RestClient(server.rest, "hp2"), GrpcClient(server.grpc, "hp2")
        stop = threading.Event()
        failures: list[str] = []
        served_versions: list[int] = []
        counts = {"rest": 0, "grpc": 0}

        def rest_loop() -> None:
            while not stop.is_set():
                try:
                    assert rest.predict(instances=[[1.0], [2.0]]) == [[2.5], [3.0]]
                    counts["rest"] += 1
                except Exception as e:  # noqa: BLE001 - every failure is recorded
                    failures.append(f"REST: {e!r}")

        def grpc_loop() -> None:
            x = np.array([[4.0]], np.float32)
            while not stop.is_set():
                try:
                    request_out = grpc_client.predict({"x": x})
                    np.testing.assert_array_equal(request_out["y"], [[4.0]])
                    counts["grpc"] += 1
                except Exception as e:  # noqa: BLE001
                    failures.append(f"gRPC: {e!r}")

        def latest_version() -> int:
            return grpc_client.metadata().model_spec.version.value

        threads = [threading.Thread(target=rest_loop), threading.Thread(target=grpc_loop)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            (base / ".tmp-2").mkdir()  # an in-progress push and stray directories are ignored
            (base / "tmp").mkdir()
            shutil.copytree(HALF_PLUS_TWO, base / "2")  # non-atomic copy, like TFX's Pusher
            wait_for(lambda: versions(rest) == {"2": "AVAILABLE", "1": "END"})
            served_versions.append(latest_version())

            broken = base / "3"
            broken.mkdir()
            (broken / "saved_model.pb").write_bytes(b"\x00garbage")
            wait_for(lambda: "3" in versions(rest))
            status = {s["version"]: s for s in rest.status()["model_version_status"]}
            assert status["3"]["state"] == "END"
            assert status["3"]["status"]["error_code"] != "OK" and status["3"]["status"]["error_message"]
            assert status["2"]["state"] == "AVAILABLE"
            served_versions.append(latest_version())
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert failures == []
        assert counts["rest"] > 5 and counts["grpc"] > 5, counts
        assert served_versions == [2, 2]
        assert requests.get(f"{server.rest}/v1/models/hp2/versions/2", timeout=5).status_code == 200
        grpc_client.close()
