"""The Airflow DAG under real ``airflow`` commands, in a temporary home set up by scripts/airflow.sh.

Each command parses the DAG file (about a minute: TFX imports). Tests in this module share one
home and one SQLite Airflow database.
"""

from __future__ import annotations

import http.server
import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipeline import airflow_callbacks
from tests.conftest import PIPELINE_NODES, REPO, clean_env

pytestmark = pytest.mark.slow

DAG_ID = "mnist-tfx"
TASKS = PIPELINE_NODES
SLICE_ENV = {
    "MNIST_TFX_TRAIN_LIMIT": "200",
    "MNIST_TFX_EVAL_LIMIT": "100",
    "MNIST_TFX_EPOCHS": "1",
    "MNIST_TFX_MIN_ACCURACY": "0.05",
}


def _clean_env(home: Path) -> dict[str, str]:
    return clean_env(home, SLICE_ENV)


def _setup(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/airflow.sh"],
        cwd=REPO,
        env=_clean_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _airflow(home: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """``airflow ARGS`` in the environment that ``source <home>/airflow/env.sh`` gives."""
    script = f'source "{home}/airflow/env.sh" && exec airflow "$@"'
    return subprocess.run(
        ["bash", "-c", script, "airflow", *args],
        cwd=REPO,
        env={**_clean_env(home), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _json_list(stdout: str) -> list[dict]:
    """The JSON list an ``airflow … -o json`` command printed after its log lines."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("["):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"no JSON list in:\n{stdout[-3000:]}")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A project home with the verified MNIST data and ``make airflow`` done in it."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "data").symlink_to(data_dir, target_is_directory=True)
    done = _setup(home)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home


def test_setup_links_the_dag_writes_the_environment_and_is_idempotent(airflow_home: Path) -> None:
    airflow_dir = airflow_home / "airflow"
    link = airflow_dir / "dags" / "mnist_tfx_dag.py"
    assert link.is_symlink() and link.resolve() == REPO / "pipeline" / "airflow_dag.py"
    assert list((airflow_dir / "dags").iterdir()) == [link]  # Airflow parses nothing else
    env_file = (airflow_dir / "env.sh").read_text()
    for line in (
        f"export AIRFLOW_HOME={airflow_dir}",
        f"export AIRFLOW__CORE__DAGS_FOLDER={airflow_dir / 'dags'}",
        "export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=600",
        "export AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT=600",
        "export AIRFLOW__CORE__LOAD_EXAMPLES=False",
        f"export MNIST_TFX_HOME={airflow_home}",
        "export MNIST_TFX_TRAIN_LIMIT=200",
    ):
        assert line in env_file.splitlines()
    with sqlite3.connect(airflow_dir / "airflow.db") as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    again = _setup(airflow_home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "metadata database migrated" in again.stdout
    assert link.resolve() == REPO / "pipeline" / "airflow_dag.py"
    with sqlite3.connect(airflow_dir / "airflow.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (version,)


def test_dags_list_shows_the_dag_with_a_daily_schedule(airflow_home: Path) -> None:
    started = time.monotonic()
    done = _airflow(
        airflow_home,
        "dags",
        "list",
        "-o",
        "json",
        "--columns",
        "dag_id,fileloc,schedule_interval,timetable_description",
    )
    print(f"airflow dags list: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Failed to load" not in done.stderr, done.stderr[-3000:]
    (dag,) = _json_list(done.stdout)
    assert dag["dag_id"] == DAG_ID
    assert dag["schedule_interval"] == "@daily"
    assert dag["timetable_description"] == "At 00:00"
    assert Path(dag["fileloc"]).name == "mnist_tfx_dag.py"


def test_schedule_comes_from_the_environment(airflow_home: Path) -> None:
    done = _airflow(
        airflow_home,
        "dags",
        "list",
        "-o",
        "json",
        "--columns",
        "dag_id,schedule_interval",
        MNIST_TFX_SCHEDULE="30 4 * * 1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _json_list(done.stdout) == [{"dag_id": DAG_ID, "schedule_interval": "30 4 * * 1"}]


def test_one_task_per_component(airflow_home: Path) -> None:
    done = _airflow(airflow_home, "tasks", "list", DAG_ID)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = [line.strip() for line in done.stdout.splitlines() if line.strip() in TASKS]
    assert sorted(listed) == sorted(TASKS)


def test_dag_runs_one_at_a_time_without_retries_and_every_task_reports_failures(airflow_home: Path) -> None:
    """DAG-level facts, from the DAG object Airflow builds (no run needed)."""
    script = (
        "import json; from pipeline import airflow_dag as m; d = m.DAG; "
        "print(json.dumps({'max_active_runs': d.max_active_runs, 'catchup': d.catchup, 'tasks': {t.task_id: "
        "[t.retries, t.on_failure_callback.__name__, t.email, t.email_on_failure, t.email_on_retry]"
        " for t in d.tasks}}))"
    )
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-c", script],
        cwd=REPO,
        env={**_clean_env(airflow_home), airflow_callbacks.FAILURE_EMAIL_ENV: "ops@example.com, ml@example.com"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["max_active_runs"] == 1 and facts["catchup"] is False
    emails = ["ops@example.com", "ml@example.com"]
    assert facts["tasks"] == {task: [0, "on_task_failure", emails, True, False] for task in TASKS}


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(min(int(self.headers["Content-Length"]), 1 << 16))
        _Webhook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


def test_a_failed_component_is_logged_and_posted_to_the_webhook(airflow_home: Path, tmp_path: Path) -> None:
    """A real failed task (ExampleGen on an empty data root) fires the callback with its fields."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    empty = tmp_path / "no-data"
    empty.mkdir()
    try:
        done = _airflow(
            airflow_home,
            "dags",
            "test",
            DAG_ID,
            "2024-07-01",
            timeout=900,
            MNIST_TFX_DATA_ROOT=str(empty),
            **{airflow_callbacks.FAILURE_WEBHOOK_ENV: f"http://127.0.0.1:{server.server_port}/hook"},
        )
    finally:
        server.shutdown()
        server.server_close()
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if airflow_callbacks.LOG_PREFIX in line]
    assert lines, output[-5000:]
    fields = json.loads(lines[0].split(airflow_callbacks.LOG_PREFIX, 1)[1])
    run_id = "manual__2024-07-01T00:00:00+00:00"
    assert fields["component"] == "MnistExampleGen" and fields["run_id"] == run_id and fields["dag_id"] == DAG_ID
    assert fields["try_number"] == 1
    run_logs = airflow_home / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    assert fields["log_path"] == str(run_logs / "task_id=MnistExampleGen" / "attempt=1.log")
    assert "task_id=MnistExampleGen" in fields["log_url"] and "dag_run_id=manual__2024-07-01" in fields["log_url"]
    assert str(empty) in fields["error"], fields["error"]
    assert _Webhook.received == [fields]
    with sqlite3.connect(airflow_home / "airflow" / "airflow.db") as db:
        states = dict(
            db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id))
        )
    assert states["MnistExampleGen"] == "failed"
    downstream = set(TASKS) - {"MnistExampleGen", "latest_blessed_model_resolver"}  # the resolver needs no data
    assert {states[t] for t in downstream} == {"upstream_failed"}
