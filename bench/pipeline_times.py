"""Pipeline wall time per component (from MLMD), of an unchanged re-run, and CLI start-up times.

Full mode reads the MLMD of ``--home`` (default: the configured home): the newest run that trained
(Trainer COMPLETE) and the newest later run whose Trainer was CACHED (an unchanged re-run). It starts
no pipeline run. Quick mode runs ``mnist-tfx run`` twice on a tiny slice in a fresh home (first run,
then the unchanged re-run) and reads those. Either way, times ``mnist-tfx [COMMAND] --help`` in
fresh processes. Writes bench/results/pipeline_times.json.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from pipeline import configs
from reports import run_record

CLI = str(Path(sys.executable).parent / "mnist-tfx")
HELP_COMMANDS = ([], ["data"], ["run"], ["serve"], ["predict"])
SLICE_ARGS = ["--train-limit", "200", "--eval-limit", "100", "--epochs", "1", "--min-accuracy", "0"]


@dataclasses.dataclass(frozen=True)
class Run:
    """One pipeline run in MLMD: its executions and its wall time (first start to last update)."""

    name: str
    nodes: list[run_record.NodeRecord]
    seconds: float

    def state(self, node_id: str) -> str | None:
        return next((n.state for n in self.nodes if n.node_id == node_id), None)

    def seconds_of(self, node_id: str) -> float:
        return sum(n.seconds for n in self.nodes if n.node_id == node_id)


def read_runs(metadata_path: Path, pipeline_name: str) -> list[Run]:
    """Every run of the pipeline in MLMD, oldest first."""
    store = run_record.connect(metadata_path)
    runs = []
    for context in sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id):
        executions = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
        if not executions:
            continue
        nodes = [run_record.node_record(e, run_record.node_id_of(store, e.id, pipeline_name)) for e in executions]
        span = (
            max(e.last_update_time_since_epoch for e in executions) - min(e.create_time_since_epoch for e in executions)
        ) / 1000
        runs.append(Run(context.name, nodes, span))
    return runs


def fresh_and_rerun(runs: list[Run]) -> tuple[Run | None, Run | None]:
    """The newest run that trained, and the newest later run whose Trainer was cached."""
    fresh = next((r for r in reversed(runs) if r.state("Trainer") == "COMPLETE"), None)
    later = runs[runs.index(fresh) + 1 :] if fresh else runs
    return fresh, next((r for r in reversed(later) if r.state("Trainer") == "CACHED"), None)


def run_slice(home: Path) -> list[float]:
    """Runs the pipeline twice on a slice in ``home``; the wall time of each process."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "data").exists():
        (home / "data").symlink_to(common.data_dir(), target_is_directory=True)
    env = {**os.environ, configs.HOME_ENV: str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    walls = []
    for attempt in ("first run", "unchanged re-run"):
        started = time.perf_counter()
        done = subprocess.run(
            [CLI, "run", "--home", str(home), *SLICE_ARGS],
            env=env,
            cwd=common.REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        walls.append(time.perf_counter() - started)
        if done.returncode:
            sys.exit(f"{attempt} failed ({done.returncode}):\n{done.stdout[-4000:]}")
        print(f"slice {attempt}: {walls[-1]:.1f} s", flush=True)
    return walls


def cli_startup(repeats: int) -> dict[str, float]:
    """Median seconds of ``mnist-tfx [COMMAND] --help`` in a fresh process, per command."""
    times = {}
    for command in HELP_COMMANDS:
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                [CLI, *command, "--help"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
            samples.append(time.perf_counter() - started)
        times[" ".join(["mnist-tfx", *command, "--help"])] = statistics.median(samples)
    return times


def main() -> None:
    started = time.perf_counter()
    p = common.parser(__doc__)
    p.add_argument("--home", help="full mode: the home whose MLMD to read (default: the configured home)")
    p.add_argument("--slice-home", help="quick mode: where the slice runs go (default: a temporary directory)")
    p.add_argument("--repeats", type=int, help="runs of each --help command (default 3; quick 1)")
    args = p.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    process_walls = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            config = configs.PipelineConfig(home=Path(args.slice_home or tmp))
            process_walls = run_slice(config.home)
        else:
            config = common.pipeline_config(args.home)
        runs = read_runs(config.metadata_path, config.pipeline_name) if config.metadata_path.exists() else []
    fresh, rerun = fresh_and_rerun(runs)
    startup = cli_startup(args.repeats)
    label = "slice" if args.quick else "default run"
    if fresh:
        ids = list(dict.fromkeys(n.node_id for n in fresh.nodes))
        rows = [
            [
                node,
                fresh.state(node),
                fresh.seconds_of(node),
                rerun.state(node) if rerun else None,
                rerun.seconds_of(node) if rerun else None,
            ]
            for node in ids
        ]
        rows.append(
            ["wall (MLMD: first start to last update)", "", fresh.seconds, "", rerun.seconds if rerun else None]
        )
        if process_walls:
            rows.append(["wall (whole `mnist-tfx run` process)", "", process_walls[0], "", process_walls[1]])
        print(f"\n{label} in {config.home}")
        print(common.table(rows, ["component", "run", "s", "re-run", "s"]))
    else:
        print(f"\nno run that trained in {config.metadata_path}; run `make run` first")
    print(common.table(list(startup.items()), ["command", "s"], floatfmt=".2f"))
    rerun_seconds = (process_walls[1] if process_walls else rerun.seconds) if rerun else None
    share = 100 * (fresh.seconds - fresh.seconds_of("Trainer")) / fresh.seconds if fresh else None
    all_cached = rerun is not None and all(n.state == "CACHED" for n in rerun.nodes if "resolver" not in n.node_id)
    results = {
        "home": str(config.home),
        "runs": {k: dataclasses.asdict(r) if r else None for k, r in (("run", fresh), ("rerun", rerun))},
        "process_seconds": process_walls,
        "rerun_all_cached": all_cached,
        "not_trainer_percent": share,
        "cli_startup_seconds": startup,
    }
    targets = [
        common.target(f"pipeline: unchanged re-run ({label})", rerun_seconds, "<=", 60, " s"),
        common.target(f"pipeline: all but Trainer, share of {label}", share, "<=", 25, " %"),
    ]
    if rerun is not None and not all_cached:
        print(
            "the re-run was not all cached: "
            + ", ".join(
                f"{n.node_id} {n.state}" for n in rerun.nodes if n.state != "CACHED" and "resolver" not in n.node_id
            )
        )
    common.write("pipeline_times", args, results, targets, started)


if __name__ == "__main__":
    main()
