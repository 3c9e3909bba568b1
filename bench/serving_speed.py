"""Serving speed under `wrk`: REST `:predict` of one image against `mnist-tfx serve` (batching off,
on, and on with 2 `--num_server_processes`), beside the in-process signature call and its
32-image batched ceiling.

Rows run interleaved over several rounds in one run (medians reported), so a busy machine shifts
them together. Each server's answer is checked equal to the others' and close to the in-process
output before any timing. Per row: p50 at 1 connection, req/s at 32 connections, and the server's
CPU seconds per request at 32 connections (from /proc/<pid>/stat of its process tree). `--baseline DIR` adds the same
rows for another checkout (e.g. `git archive main | tar -x -C DIR`), for an A/B in one run.
Writes bench/results/serving_speed.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench import common
from bench.serving_latency import BATCH, BATCHING, Model, choose_model, in_process_call

WRK_INSTALL = "wrk not found: install it (Debian/Ubuntu: `apt-get install -y wrk`; macOS: `brew install wrk`)"
BATCH_TIMEOUT_MS = 2.0  # batch_timeout_micros of BATCHING
MANY = 32  # connections of the throughput rows
PROCESSES = 2  # --num_server_processes of the multi-process row
_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def wrk_script(model: Model, tmp: Path) -> Path:
    """A wrk Lua script that POSTs one image to `:predict`."""
    script = tmp / "predict.lua"
    body = json.dumps(model.rest_body())  # a Lua string literal is a JSON string here (no escapes beyond \")
    script.write_text(f'wrk.method = "POST"\nwrk.body = {body}\nwrk.headers["Content-Type"] = "application/json"\n')
    return script


def run_wrk(port: int, model: Model, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """One bounded wrk run: p50 (ms), req/s, requests and non-2xx count."""
    url = f"http://127.0.0.1:{port}/v1/models/{model.name}:predict"
    import subprocess

    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not (p50 and rate and count):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    return {
        "p50_ms": float(p50.group(1)) * _WRK_UNITS[p50.group(2)],
        "requests_per_second": float(rate.group(1)),
        "requests": int(count.group(1)),
        "errors": int(errors.group(1)) if errors else 0,
    }


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants (the --num_server_processes workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(entry.name)[1])
            except (OSError, IndexError):
                continue
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for member in tree:
        try:
            total += sum(int(f) for f in _stat(member)[11:13])
        except (OSError, IndexError):
            continue
    return total / _CLOCK_TICKS


def predict(port: int, model: Model) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models/{model.name}:predict",
        data=model.rest_body().encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def timed(call: Callable[[], object], per_call: int, seconds: float) -> dict[str, float]:
    """An in-process signature call repeated for `seconds`: p50, examples/s, CPU per example."""
    for _ in range(5):
        call()
    latencies, cpu0, end = [], time.process_time(), time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        t = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {
        "p50_ms": float(np.median(latencies)) * 1000,
        "examples_per_second": len(latencies) * per_call / wall,
        "cpu_ms_per_example": cpu / (len(latencies) * per_call) * 1000,
    }


def check_answers(answers: dict[str, str], model: Model, reference: np.ndarray) -> None:
    """Every server answered the same text, and it matches the in-process output."""
    texts = set(answers.values())
    if len(texts) != 1:
        raise SystemExit(f"servers disagree: {answers}")
    rows = json.loads(texts.pop())["predictions"]  # one object per row when the signature has several outputs
    rows = [row[model.output_name] if isinstance(row, dict) else row for row in rows]
    predictions = np.asarray(rows, dtype=np.float32)
    if not np.allclose(predictions, reference, rtol=1e-6, atol=1e-7):
        raise SystemExit(f"served {predictions} but the model gives {reference}")


def issue_targets(
    rest_added_ms: float | None,
    batching_added_ms: float | None,
    share_of_ceiling: float | None,
    cpu_ms: float | None,
) -> list[dict[str, Any]]:
    """The targets of the serving-speed issue; None: not measured."""
    return [
        common.target("serving speed: REST p50 − in-process p50, 1 conn", rest_added_ms, "<=", 0.5, " ms"),
        common.target(
            "serving speed: REST batching on − off p50 − batch timeout, 1 conn", batching_added_ms, "<=", 0.3, " ms"
        ),
        common.target(f"serving speed: REST batching on ÷ ceiling, {MANY} conns", share_of_ceiling, ">=", 0.5),
        common.target(f"serving speed: REST server CPU per request, {MANY} conns", cpu_ms, "<=", 0.9, " ms"),
        # Not measured by this benchmark yet (reported as such): the FastAPI peer and gRPC load.
        common.target(f"serving speed: REST req/s ÷ 2-worker FastAPI peer, {MANY} conns", None, ">=", 1.5),
        common.target("serving speed: gRPC p50 − in-process p50, 1 conn", None, "<=", 0.5, " ms"),
        common.target(f"serving speed: gRPC batching on ÷ ceiling, {MANY} conns", None, ">=", 0.5),
    ]


def main() -> None:
    started = time.perf_counter()
    p = common.parser(__doc__)
    p.add_argument("--model-base-path", help="pushed model (default <home>/serving_model/mnist)")
    p.add_argument("--home", help="home for the default model path and MNIST data (default: the configured home)")
    p.add_argument("--seconds", type=int, help="seconds per wrk run (default 10; quick 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 4; quick 2)")
    p.add_argument("--baseline", help="another checkout whose server is measured beside this one")
    args = p.parse_args()
    if shutil.which("wrk") is None:  # reported, not failed: `make bench` goes on with the others
        print(f"NOT MEASURED: {WRK_INSTALL}", flush=True)
        common.write(
            "serving_speed",
            args,
            {"skipped": WRK_INSTALL, "servers": {}},
            issue_targets(None, None, None, None),
            started,
        )
        return
    args.seconds = args.seconds or (2 if args.quick else 10)
    args.rounds = args.rounds or (2 if args.quick else 4)
    model, fallback = choose_model(args)
    if fallback:
        print(f"NOTE: {fallback}", flush=True)
    # The signature called in this process: one image per call, and 32 per call (the ceiling);
    # timed in every round with the servers.
    single_call, batched_call = in_process_call(model)(), in_process_call(model, BATCH)()
    reference = np.asarray(single_call())
    in_process_rounds: dict[str, list[dict[str, float]]] = {"single": [], "batched": []}
    checkouts = {"": common.REPO} | ({"baseline ": Path(args.baseline).resolve()} if args.baseline else {})
    rows: dict[str, list[dict[str, float]]] = {}
    load: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "batching.txt").write_text(BATCHING)
        script = wrk_script(model, tmp)
        servers: dict[str, tuple[Any, int, int]] = {}
        try:
            for prefix, checkout in checkouts.items():
                for batching, processes in ((False, 1), (True, 1), (True, PROCESSES)):
                    if processes > 1 and prefix:
                        continue  # the baseline may not have --num_server_processes
                    flags = (
                        ["--enable_batching", f"--batching_parameters_file={tmp / 'batching.txt'}"] if batching else []
                    )
                    flags += [f"--num_server_processes={processes}"] if processes > 1 else []
                    name = f"{prefix}REST, batching {'on' if batching else 'off'}"
                    name += f", {processes} processes" if processes > 1 else ""
                    servers[name] = common.start_serve(sys.executable, checkout, model.name, model.base_path, *flags)
            check_answers({n: predict(rest, model) for n, (_, _, rest) in servers.items()}, model, reference)
            for round_index in range(args.rounds):
                in_process_rounds["single"].append(timed(single_call, 1, args.seconds))
                in_process_rounds["batched"].append(timed(batched_call, BATCH, args.seconds))
                for name, (proc, _, rest) in servers.items():
                    one = run_wrk(rest, model, script, 1, args.seconds)
                    cpu0 = cpu_seconds(proc.pid)
                    many = run_wrk(rest, model, script, MANY, args.seconds)
                    cpu = cpu_seconds(proc.pid) - cpu0
                    rows.setdefault(name, []).append(
                        {
                            "p50_ms_1": one["p50_ms"],
                            "requests_per_second_32": many["requests_per_second"],
                            "cpu_ms_per_request_32": cpu / max(1, many["requests"]) * 1000,
                            "errors": one["errors"] + many["errors"],
                        }
                    )
                    load.append(os.getloadavg()[0])
                print(f"round {round_index + 1}/{args.rounds} done", flush=True)
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(60)
    single, batched = (
        {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for runs in (in_process_rounds["single"], in_process_rounds["batched"])
    )
    medians = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in rows.items()}
    ceiling = batched["examples_per_second"]
    table = [["in-process, 1 image", single["p50_ms"], single["examples_per_second"], "", single["cpu_ms_per_example"]]]
    table.append([f"in-process, {BATCH} images (ceiling)", "", ceiling, 1.0, batched["cpu_ms_per_example"]])
    for name, m in medians.items():
        table.append(
            [
                name,
                m["p50_ms_1"],
                m["requests_per_second_32"],
                m["requests_per_second_32"] / ceiling,
                m["cpu_ms_per_request_32"],
            ]
        )
    print(
        f"\n{model.name} from {model.base_path}, one image per request, wrk {args.seconds:g} s per row, "
        f"{args.rounds} interleaved rounds (medians), {os.cpu_count()} CPUs, load average "
        f"{min(load):.2f}–{max(load):.2f}"
    )
    headers = ["server", "p50 ms, 1 conn", f"req/s, {MANY} conns", "÷ ceiling", "server CPU ms/request"]
    print(common.table(table, headers, floatfmt=".2f"))
    off, on = medians["REST, batching off"], medians["REST, batching on"]
    # Throughput targets: the better batching-on configuration (one process or several).
    best = max(
        (m for n, m in medians.items() if n.startswith("REST, batching on")), key=lambda m: m["requests_per_second_32"]
    )
    targets = issue_targets(
        off["p50_ms_1"] - single["p50_ms"],
        on["p50_ms_1"] - off["p50_ms_1"] - BATCH_TIMEOUT_MS,
        best["requests_per_second_32"] / ceiling,
        best["cpu_ms_per_request_32"],
    )
    common.write(
        "serving_speed",
        args,
        {
            "model": model.name,
            "model_base_path": str(model.base_path),
            "fallback": fallback,
            "in_process": single,
            "in_process_batch": {"batch": BATCH, **batched},
            "servers": medians,
            "rounds": rows,
            "load_average_1m": load,
        },
        targets,
        started,
    )


if __name__ == "__main__":
    main()
