"""A real, local Google Cloud Storage server for tests: ``gcp-storage-emulator``, in memory, on loopback.

:func:`running` starts one on a free port (a test module's fixture) and gives the environment that
sends every client here:

- Beam and google-cloud-storage: ``STORAGE_EMULATOR_HOST`` (plain HTTP).
- TensorFlow's own ``gs://`` filesystem, the one ``mnist-tfx`` uses on a real bucket: it always
  calls ``https://www.googleapis.com`` / ``https://storage.googleapis.com``, so it goes through
  ``HTTPS_PROXY`` = the emulator, which answers ``CONNECT`` for those hosts with TLS
  (tests/gcs_emulator_server.py), with a certificate from a CA made for this emulator and trusted
  through ``CURL_CA_BUNDLE``; ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` stands in for credentials.
  ``NO_PROXY`` keeps every other connection (gRPC, REST, the emulator's plain HTTP) direct.

Why not the ``tensorflow-io-gcs-filesystem`` plugin, which takes an emulator endpoint
(``TF_USE_MODULAR_FILESYSTEM``, ``CLOUD_STORAGE_EMULATOR_ENDPOINT``; ../shared/ENVIRONMENT.md,
"Object stores")? Its 0.37.1 wheel has two bugs that any GCS would meet, found here with it:
a directory rename is a single-object rewrite (TFT's Transform renames its output directory:
``RewriteObject NOT_FOUND``); with its block cache off (its default) a read before the last-read
block copies from before that buffer (``offset < buffer_end && buffer_start`` in its
gcs_filesystem.cc, where TensorFlow's has ``offset >= buffer_start``), so checkpoints, which read
their index footer first, fail with "block checksum mismatch" or SIGSEGV. A third only plain HTTP
meets: its google-cloud-cpp 1.21 client spills a socket read that overflows the caller's buffer into a 16 KiB buffer without a
bounds check, so objects over ~150 KB crash it on plain HTTP, where one read can return 128 KiB
(over TLS, as from GCS, a read returns at most one 16 KiB record).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.common import free_port
from tests.gcs_emulator_server import GCS_HOSTS, TLS_CERT_FLAG

REPO = Path(__file__).resolve().parents[1]
BUCKET = "mnist-tfx-test"
START_TIMEOUT_S = 60.0
# Settings of other GCS clients that must not leak into the subprocesses: the plugin's switch
# (TensorFlow would load it instead of its own filesystem) and its endpoint.
FOREIGN_SETTINGS = ("TF_USE_MODULAR_FILESYSTEM", "CLOUD_STORAGE_EMULATOR_ENDPOINT")


@dataclasses.dataclass(frozen=True)
class Gcs:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    ca_bundle: Path  # the certificate TensorFlow's curl trusts for GCS's host names here

    @property
    def env(self) -> dict[str, str]:
        """This process's environment plus what sends Beam, TensorFlow and google-cloud-storage here."""
        direct = "127.0.0.1,localhost,::1"
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_SETTINGS}
        return {
            **env,
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "HTTPS_PROXY": self.endpoint,
            "https_proxy": self.endpoint,
            "NO_PROXY": direct,
            "no_proxy": direct,
            "CURL_CA_BUNDLE": str(self.ca_bundle),
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # the emulator checks no token
            "NO_GCE_CHECK": "true",  # google-auth (Beam's client): no probe of a GCE metadata server
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


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A one-day test CA (``ca.pem``) and, signed by it, a certificate and key for GCS's host names (``gcs.pem``).

    ``cryptography`` is google-auth's dependency (pinned in requirements.lock).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mnist-tfx test CA")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key, gcs_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        certificate("mnist-tfx test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    hosts = sorted(host.split(":")[0] for host in GCS_HOSTS)
    gcs = (
        certificate(hosts[0], gcs_key)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host) for host in hosts]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, gcs_path = directory / "ca.pem", directory / "gcs.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key = gcs_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    gcs_path.write_bytes(gcs.public_bytes(serialization.Encoding.PEM) + key)
    return ca_path, gcs_path


@contextlib.contextmanager
def running(log_dir: Path) -> Iterator[Gcs]:
    """A fresh in-memory emulator with one bucket, stopped on leaving; its output and certificates in ``log_dir``."""
    ca, cert = make_certificates(log_dir)
    port = free_port()
    log = log_dir / "emulator.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.gcs_emulator_server", f"{TLS_CERT_FLAG}{cert}", "start"]
            + ["--host=127.0.0.1", f"--port={port}", "--in-memory", f"--default-bucket={BUCKET}"],
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
        yield Gcs(endpoint, BUCKET, ca)
    finally:
        server.terminate()
        server.wait(timeout=30)
