"""A real, local Google Cloud Storage server for tests: ``gcp-storage-emulator``, in memory, on loopback.

:func:`running` starts one on a free port (a test module's fixture) and gives the environment that
points Beam (``STORAGE_EMULATOR_HOST``) and TensorFlow's modular GCS filesystem at it. TensorFlow
needs every one of ``TF_GCS_ENV`` set, or its plugin crashes on the first gs:// call; and it crashes
on reads of objects over ~128 KB from this emulator, so tests keep TF-side reads small
(../shared/ENVIRONMENT.md, "Object stores").
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BUCKET = "mnist-tfx-test"
START_TIMEOUT_S = 60.0
TF_GCS_ENV = {
    "TF_USE_MODULAR_FILESYSTEM": "true",
    "GCS_READ_CACHE_BLOCK_SIZE_MB": "16",
    "GCS_READ_CACHE_MAX_SIZE_MB": "0",
    "GCS_READ_CACHE_MAX_STALENESS": "0",
    "GCS_STAT_CACHE_MAX_AGE": "0",
    "GCS_STAT_CACHE_MAX_ENTRIES": "0",
    "GOOGLE_CLOUD_CPP_STORAGE_REST_CONFIG": "disable-xml",
}


@dataclasses.dataclass(frozen=True)
class Gcs:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """This process's environment plus what sends Beam, TensorFlow and google-cloud-storage here."""
        return {
            **os.environ,
            **TF_GCS_ENV,
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "CLOUD_STORAGE_EMULATOR_ENDPOINT": self.endpoint,
            "GOOGLE_CLOUD_PROJECT": "test",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }

    def uri(self, *parts: str) -> str:
        return "/".join((f"gs://{self.bucket}", *parts))

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix`` and its bytes, read back with the google-cloud-storage client."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint}
        )
        found = {}
        for blob in client.list_blobs(self.bucket, prefix=prefix):
            blob._properties.pop("mediaLink", None)  # the emulator's link lacks its port: build it from the endpoint
            found[blob.name] = blob.download_as_bytes()
        return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(log_dir: Path) -> Iterator[Gcs]:
    """A fresh in-memory emulator with one bucket, stopped on leaving; its output in ``log_dir``."""
    executable = shutil.which("gcp-storage-emulator", path=str(Path(sys.executable).parent))
    assert executable, "gcp-storage-emulator is not installed (the test extra of pyproject.toml)"
    port = _free_port()
    log = log_dir / "emulator.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [executable, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory", f"--default-bucket={BUCKET}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/storage/v1/b/{BUCKET}", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        yield Gcs(endpoint, BUCKET)
    finally:
        server.terminate()
        server.wait(timeout=30)
