"""A real, local Google Cloud Storage server for tests: ``gcp-storage-emulator``, in memory, on loopback.

:func:`running` starts one on a free port (a test module's fixture) and gives the environment that
points Beam (``STORAGE_EMULATOR_HOST``) and TensorFlow's modular GCS filesystem
(``tensorflow-io-gcs-filesystem``; TensorFlow's built-in one cannot be pointed anywhere but Google)
at it. TensorFlow needs every one of ``TF_GCS_ENV`` set, or its plugin crashes on the first gs://
call (../shared/ENVIRONMENT.md, "Object stores").

Two bugs of that plugin (0.37.1) showed here as crashes on reads; neither is in this project's code:

- Reads of objects over ~150 KB overflowed a 16 KiB buffer inside its GCS client. Real GCS, over
  TLS, never hands that client more than 16 KiB at once; the emulator on plain HTTP did. The
  emulator runs through tests/gcs_emulator_server.py, which sends bodies 16 KiB at a time.
- With its block cache off (``GCS_READ_CACHE_MAX_SIZE_MB=0``), a file reads through a one-block
  buffer whose hit test (``offset < buffer_end && buffer_start`` in its gcs_filesystem.cc, where
  TensorFlow's own GCS filesystem has ``offset >= buffer_start``) serves a read *before* the buffered
  block from memory before the buffer. A checkpoint or SavedModel reads its index footer first, then
  earlier blocks, so it failed with "block checksum mismatch" or SIGSEGV. ``TF_GCS_ENV`` turns the
  block cache on, which reads through a correct path; ``GCS_STAT_CACHE_MAX_AGE=0`` makes every read
  re-check the object's generation, so an overwritten object is never served from the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUCKET = "mnist-tfx-test"
START_TIMEOUT_S = 60.0
TF_GCS_ENV = {
    "TF_USE_MODULAR_FILESYSTEM": "true",
    "GCS_READ_CACHE_BLOCK_SIZE_MB": "16",
    "GCS_READ_CACHE_MAX_SIZE_MB": "64",  # the block cache on: its read path is the correct one (above)
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
    port = _free_port()
    log = log_dir / "emulator.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.gcs_emulator_server", "start", "--host=127.0.0.1", f"--port={port}"]
            + ["--in-memory", f"--default-bucket={BUCKET}"],
            cwd=REPO,
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
