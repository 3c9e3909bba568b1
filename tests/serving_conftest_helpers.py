"""Shared helpers for the serving tests: fixture paths, free ports, and running a server
(ours in-process, or a real `tensorflow_model_server` when one is on PATH)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import requests

from bench.common import TF_SERVING_TESTDATA, free_port

FIXTURES = TF_SERVING_TESTDATA
TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
TF_SERVING_BINARY = "tensorflow_model_server"

# The models TF Serving's own REST tests serve, plus the TF1 and TF2 single-version models.
CONFORMANCE_CONFIG = f"""
model_config_list {{
  config {{
    name: "{TWO_VERSIONS}"
    base_path: "{FIXTURES / TWO_VERSIONS}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 123 }} }}
    version_labels {{ key: "Version_Label" value: 123 }}
  }}
  config {{
    name: "default"
    base_path: "{FIXTURES / 'saved_model_half_plus_two_cpu'}"
    model_platform: "tensorflow"
  }}
  config {{
    name: "tf2"
    base_path: "{FIXTURES / 'saved_model_half_plus_two_tf2_cpu'}"
    model_platform: "tensorflow"
  }}
}}
"""


def single_model_config(name: str, base_path: Path | str) -> str:
    return (
        f'model_config_list {{ config {{ name: "{name}" base_path: "{base_path}" ' f'model_platform: "tensorflow" }} }}'
    )


@dataclasses.dataclass
class RunningServer:
    """Where a started server listens."""

    kind: str
    rest: str  # http://127.0.0.1:PORT
    grpc: str  # 127.0.0.1:PORT


def wait_until_ready(rest_url: str, model: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{rest_url}/v1/models/{model}", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{rest_url} did not serve {model} within {timeout} s")


@contextlib.contextmanager
def serve_in_process(
    config_text: str, poll_seconds: float = 1.0, batching_parameters: str | None = None, **overrides
) -> Iterator[RunningServer]:
    """Our ModelServer in this process on free loopback ports, with the flags the real one gets
    in `serve_tf_serving` (labels on unavailable versions allowed, Prometheus on); `overrides`
    sets other ServerOptions fields, or Limits fields (`max_request_bytes=...`)."""
    import dataclasses

    from cli.serve import rest_plug_ins
    from serving.limits import Limits
    from serving.model_config import parse_model_server_config
    from serving.monitoring_config import DEFAULT_PROMETHEUS_PATH
    from serving.server import ModelServer, ServerOptions

    options = ServerOptions(
        models=parse_model_server_config(config_text),
        port=free_port(),
        rest_api_port=free_port(),
        file_system_poll_wait_seconds=poll_seconds,
        batching_parameters_text=batching_parameters,
        limits=Limits(**{k: overrides.pop(k) for k in [f.name for f in dataclasses.fields(Limits)] if k in overrides}),
        **{
            "allow_version_labels_for_unavailable_models": True,
            "prometheus_path": DEFAULT_PROMETHEUS_PATH,
            **overrides,
        },
    )
    server = ModelServer(options, extra_routes=rest_plug_ins())  # as `mnist-tfx serve` does
    server.start()
    try:
        yield RunningServer("mnist-tfx", f"http://{server.rest_address}", server.grpc_address)
    finally:
        server.stop()


@contextlib.contextmanager
def serve_tf_serving(config_text: str, ready_model: str) -> Iterator[RunningServer]:
    """A real tensorflow_model_server subprocess with the same model config."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "models.config"
        config.write_text(config_text)
        grpc_port, rest_port = free_port(), free_port()
        proc = subprocess.Popen(
            [
                shutil.which(TF_SERVING_BINARY),
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                f"--model_config_file={config}",
                "--allow_version_labels_for_unavailable_models",
                f"--monitoring_config_file={FIXTURES / 'monitoring_config.txt'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_ready(f"http://127.0.0.1:{rest_port}", ready_model)
            yield RunningServer(TF_SERVING_BINARY, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}")
        finally:
            proc.terminate()
            proc.wait(30)


def server_kinds() -> list:
    """pytest params: our server, and the real one (skipped when not on PATH)."""
    import pytest

    return [
        "mnist-tfx",
        pytest.param(
            TF_SERVING_BINARY,
            marks=pytest.mark.skipif(
                shutil.which(TF_SERVING_BINARY) is None, reason=f"{TF_SERVING_BINARY} is not on PATH"
            ),
        ),
    ]


@contextlib.contextmanager
def serve(kind: str, config_text: str, ready_model: str) -> Iterator[RunningServer]:
    if kind == TF_SERVING_BINARY:
        with serve_tf_serving(config_text, ready_model) as server:
            yield server
    else:
        with serve_in_process(config_text) as server:
            yield server
