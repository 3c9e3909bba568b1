"""`mnist-tfx run` takes its home's lock: a second run on a busy home stops before TFX runs anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from components import locks

REPO = Path(__file__).resolve().parents[1]
HOLD = """import sys, time
from components import locks
with locks.hold(sys.argv[1], "mnist-tfx run of the first run"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_run_on_a_busy_home_stops_naming_the_running_one(tmp_path: Path, data_dir: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "data").symlink_to(data_dir, target_is_directory=True)
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "held\n"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        second = subprocess.run(
            [str(Path(sys.executable).parent / "mnist-tfx"), "run", "--home", str(home), "--train-limit", "10"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        first.kill()
        first.wait()
        first.stdout.close()
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"error: {home}: in use by pid {first.pid} on " in second.stderr
    assert "(mnist-tfx run of the first run); wait for that run to finish, or use another --home" in second.stderr
    assert "started" not in second.stdout  # no component ran
    assert sorted(p.name for p in home.iterdir()) == sorted(["data", locks.LOCK_FILE_NAME])  # no MLMD, no root
