"""`make bench`: every benchmark in its own process (fresh TF state), then one table of targets.

    python -m bench.run_all [--quick] [--home DIR]

Quick mode uses small settings, runs the pipeline on a slice in a temporary home and serves the
model that slice pushed. Writes bench/results/<name>.json per benchmark and bench/results/summary.json;
exits non-zero if a benchmark failed (unmet targets are reported, not failures).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

BENCHMARKS = ("train_throughput", "input_pipeline", "pipeline_times", "serving_latency")


def arguments(name: str, quick: bool, home: str | None, slice_home: Path) -> list[str]:
    """Command-line arguments of one benchmark."""
    args = ["--quick"] if quick else []
    if home:
        args += ["--home", home]
    if quick and name == "pipeline_times":
        args += ["--slice-home", str(slice_home)]
    if quick and name == "serving_latency":
        args += ["--model-base-path", str(common.pipeline_config(str(slice_home)).serving_model_dir)]
    return args


def main() -> int:
    started = time.perf_counter()
    p = common.parser(__doc__)
    p.add_argument("--home", help="home with MNIST data, MLMD and the pushed model (default: the configured home)")
    p.add_argument("--only", nargs="*", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = p.parse_args()
    runs, targets = {}, []
    with tempfile.TemporaryDirectory(prefix="bench-slice-") as tmp:
        for name in args.only:
            result = common.RESULTS / f"{name}.json"
            result.unlink(missing_ok=True)
            command = [sys.executable, "-m", f"bench.{name}", *arguments(name, args.quick, args.home, Path(tmp))]
            print(f"\n=== {' '.join(command[2:])}", flush=True)
            t0 = time.perf_counter()
            code = subprocess.run(command, cwd=common.REPO).returncode
            runs[name] = {
                "returncode": code,
                "seconds": round(time.perf_counter() - t0, 1),
                "result": str(result) if result.exists() else None,
            }
            if result.exists():
                targets += [{"benchmark": name, **t} for t in json.loads(result.read_text())["targets"]]
    print("\n=== summary" + (" (quick mode: small settings, pipeline on a slice)" if args.quick else ""))
    print(
        common.table(
            [
                [n, "ok" if r["returncode"] == 0 else f"FAILED ({r['returncode']})", r["seconds"]]
                for n, r in runs.items()
            ],
            ["benchmark", "", "s"],
        )
    )
    print(common.targets_table(targets))
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    out = common.RESULTS / "summary.json"
    out.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "machine": common.machine(),
                "benchmarks": runs,
                "targets": targets,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    print(f"wrote {out} ({time.perf_counter() - started:.0f} s in all)")
    return 0 if all(r["returncode"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
