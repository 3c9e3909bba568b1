"""`make bench QUICK=1` runs end to end and writes every results file (no timing asserts).

Slow: trains briefly three ways, runs the pipeline twice on a slice and starts two servers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run_all import BENCHMARKS

REPO = Path(__file__).resolve().parents[1]
COMMON_KEYS = {"name", "quick", "args", "machine", "results", "targets", "seconds"}
RESULT_KEYS = {
    "train_throughput": {
        "custom, oneDNN off",
        "fit, oneDNN off",
        "eager, oneDNN off",
        "custom, oneDNN on",
        "fit, oneDNN on",
    },
    "input_pipeline": {"iterate", "training", "ratio_iterate", "ratio_training"},
    "pipeline_times": {"runs", "process_seconds", "rerun_all_cached", "not_trainer_percent", "cli_startup_seconds"},
    "serving_latency": {"servers"},  # and, when wrk is installed, the rest (skipped: why not)
}
TARGET_KEYS = {"name", "value", "op", "limit", "unit", "met"}


@pytest.mark.slow
def test_quick_mode_writes_every_result(tmp_path: Path, data_dir: Path) -> None:
    home, results = tmp_path / "home", tmp_path / "results"
    home.mkdir()
    (home / "data").symlink_to(data_dir, target_is_directory=True)
    env = {
        **os.environ,
        "MNIST_TFX_HOME": str(home),
        "MNIST_TFX_BENCH_RESULTS": str(results),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-5000:]

    for name in BENCHMARKS:
        payload = json.loads((results / f"{name}.json").read_text())
        assert payload.keys() >= COMMON_KEYS, name
        assert payload["quick"] is True
        assert RESULT_KEYS[name] <= payload["results"].keys(), name
        assert payload["targets"] and all(t.keys() >= TARGET_KEYS for t in payload["targets"]), name
    for way in RESULT_KEYS["train_throughput"]:
        assert json.loads((results / "train_throughput.json").read_text())["results"][way]["images_per_second"] > 0
    serving = json.loads((results / "serving_latency.json").read_text())
    if shutil.which("wrk"):
        assert serving["results"]["fallback"] is None, "quick mode serves the model its pipeline slice pushed"
        assert set(serving["results"]["servers"]) == {
            f"{protocol}, batching {mode}" for protocol in ("REST", "gRPC") for mode in ("off", "on", "on, 2 processes")
        } | {"FastAPI peer, 1 worker", "FastAPI peer, 2 workers"}
        assert all(s["errors"] == 0 and s["requests_per_second_32"] > 0 for s in serving["results"]["servers"].values())
        assert all(t["value"] is not None for t in serving["targets"]), "every serving target is measured"
    else:
        assert "apt-get install -y wrk" in serving["results"]["skipped"]
    pipeline = json.loads((results / "pipeline_times.json").read_text())["results"]
    assert pipeline["runs"]["run"] and pipeline["runs"]["rerun"], "both slice runs are read from MLMD"

    summary = json.loads((results / "summary.json").read_text())
    assert {b: r["returncode"] for b, r in summary["benchmarks"].items()} == {b: 0 for b in BENCHMARKS}
    assert {t["benchmark"] for t in summary["targets"]} == set(BENCHMARKS)
