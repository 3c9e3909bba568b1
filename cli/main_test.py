"""The console script: help, unknown commands, and bad `run` and `report` settings (rejected before any work)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = str(Path(sys.executable).parent / "mnist-tfx")


def _run(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "MNIST_TFX_HOME": str(home)}
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120)


def test_help_lists_every_command(tmp_path: Path) -> None:
    done = _run("--help", home=tmp_path)
    assert done.returncode == 0
    for command in ("data", "run", "serve", "predict", "compile", "report"):
        assert f"  {command} " in done.stdout


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    done = _run("train", home=tmp_path)
    assert done.returncode == 2 and "usage: mnist-tfx COMMAND" in done.stdout


def test_bad_run_settings_fail_before_any_work(tmp_path: Path) -> None:
    done = _run("run", "--train-limit", "0", home=tmp_path)
    assert done.returncode == 2
    assert "error: train_limit must be a positive number of examples, got 0" in done.stderr
    assert not (tmp_path / "pipelines").exists() and not (tmp_path / "data").exists()


def test_bad_report_locations_are_errors_naming_the_flag(tmp_path: Path) -> None:
    unsupported = _run("report", "--home", "ftp://host/mnist", home=tmp_path)
    assert unsupported.returncode == 2 and "Traceback" not in unsupported.stderr
    assert "scheme ftp:// is not supported" in unsupported.stderr
    remote = _run("report", "--home", "gs://bucket/mnist", home=tmp_path)  # MLMD has no local default there
    assert remote.returncode == 2 and "(set --metadata-path)" in remote.stderr
