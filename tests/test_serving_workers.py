"""`--num_server_processes` (an mnist-tfx extension): several processes serve one port pair.

Real servers in subprocesses on TF Serving's half_plus_two model, real HTTP requests. Which
worker holds a connection is read from /proc: a worker's socket inodes against the established
TCP connections on the REST port (no extra header: TF Serving has none).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.common import REPO, free_port
from tests.serving_conftest_helpers import FIXTURES

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")]
WORKERS = 2
CONNECTIONS = 16  # all on one worker by chance: 2 × 2^-16
START_SECONDS = 300


def start(rest_port: int, log: Path) -> subprocess.Popen:
    """The server with its stderr (the workers' too, TensorFlow's logs) to `log`, once serving."""
    code = "import sys; from serving.server import main; sys.exit(main(sys.argv[1:], ''))"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            f"--port={free_port()}",
            f"--rest_api_port={rest_port}",
            "--model_name=half_plus_two",
            f"--model_base_path={FIXTURES / 'saved_model_half_plus_two_cpu'}",
            f"--num_server_processes={WORKERS}",
        ],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.monotonic() + START_SECONDS
    for line in proc.stdout:
        if "Exporting HTTP/REST API" in line:
            return proc
        assert time.monotonic() < deadline, "the workers did not start in time"
    proc.kill()
    raise AssertionError(f"server exited {proc.wait()}: {log.read_text()[-2000:]}")


def worker_pids(parent: int) -> list[int]:
    """The spawned workers of `parent` (not multiprocessing's resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is `port` (server side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def predict(connection: http.client.HTTPConnection, values: list[float]) -> tuple[int, dict]:
    body = json.dumps({"instances": values})
    connection.request("POST", "/v1/models/half_plus_two:predict", body=body)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_workers_share_the_port_answer_correctly_and_stop_on_sigterm(tmp_path: Path):
    rest_port = free_port()
    proc = start(rest_port, tmp_path / "stderr")
    connections = []
    try:
        workers = worker_pids(proc.pid)
        assert len(workers) == WORKERS
        for i in range(CONNECTIONS):
            connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=30)
            connections.append(connection)
            assert predict(connection, [float(i), 2.0]) == (200, {"predictions": [i / 2 + 2, 3.0]})
        open_connections = established_inodes(rest_port)
        held = {pid: socket_inodes(pid) & open_connections for pid in workers}
        assert all(held.values()), f"a worker holds none of the {CONNECTIONS} connections: {held}"
        assert sum(len(h) for h in held.values()) == CONNECTIONS
        # The exact JSON path still answers TF Serving's errors in every worker.
        for connection in connections[:4]:
            status, body = predict(connection, ["a"])
            assert status == 400 and "is not of expected type: float" in body["error"]
    finally:
        for connection in connections:
            connection.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
    assert code == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_dead_worker_stops_the_server_with_a_message(tmp_path: Path):
    proc = start(free_port(), tmp_path / "stderr")
    try:
        workers = worker_pids(proc.pid)
        os.kill(workers[0], signal.SIGKILL)
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1
    assert re.search(
        rf"worker \d \(pid {workers[0]}\) exited with code -9; stopping the other workers",
        (tmp_path / "stderr").read_text(),
    )
    assert not Path(f"/proc/{workers[1]}").exists() or "zombie" in Path(f"/proc/{workers[1]}/status").read_text()
