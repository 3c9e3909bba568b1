"""What every benchmark shares: the machine, MNIST data, tables, targets and the results file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from components.training_params import TrainingParams
from pipeline.configs import PipelineConfig

REPO = Path(__file__).resolve().parents[1]
SHUFFLE_BUFFER = TrainingParams.shuffle_buffer  # the Trainer's default
# TF Serving's test models and configs: beside the checkout (`../shared/...`), or $TF_SERVING_TESTDATA.
TF_SERVING_TESTDATA = Path(
    os.environ.get("TF_SERVING_TESTDATA") or REPO.parent / "shared" / "fixtures" / "tf_serving_testdata"
)
RESULTS = Path(os.environ.get("MNIST_TFX_BENCH_RESULTS") or Path(__file__).parent / "results")


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc``, with ``--quick``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small settings that finish in seconds to minutes")
    return p


def free_port() -> int:
    """A TCP port free on the loopback address now (for a server started next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict[str, Any]:
    """CPU model, core count, load average and versions: the context every number needs."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def pipeline_config(home: str | None = None) -> PipelineConfig:
    """The pipeline's configuration for ``home`` (default: the configured home)."""
    return PipelineConfig(**({"home": Path(home)} if home else {}))


def data_dir(home: str | None = None) -> Path:
    """The verified MNIST IDX files of ``home`` (default: the configured home), made if missing."""
    from components import mnist_data

    path = pipeline_config(home).data_dir
    mnist_data.materialize(path)
    return path


def in_memory_examples(images: Any, labels: Any) -> Any:
    """uint8 MNIST arrays as the Trainer's (image [28, 28, 1] in [0, 1], label) examples, from
    in-memory tensors and cached: the reference the Trainer's own dataset is measured against."""
    import numpy as np
    import tensorflow as tf

    x = (images.astype(np.float32) / 255.0)[..., np.newaxis]
    return tf.data.Dataset.from_tensor_slices((x, labels.astype(np.int64))).cache()


def target(name: str, value: float | None, op: str, limit: float, unit: str = "") -> dict[str, Any]:
    """One target: ``value op limit`` (op is "<=" or ">="); ``met`` is None when not measured."""
    value = None if value is None else float(value)
    met = None if value is None else bool(value <= limit if op == "<=" else value >= limit)
    return {"name": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met}


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], floatfmt: str = ".1f") -> str:
    return tabulate(rows, headers=headers, tablefmt="github", floatfmt=floatfmt)


def targets_table(targets: list[dict[str, Any]]) -> str:
    def shown(t: dict[str, Any]) -> list[Any]:
        value = "—" if t["value"] is None else f"{t['value']:.2f}{t['unit']}"
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        return [t["name"], value, f"{t['op']} {t['limit']:g}{t['unit']}", verdict]

    return table([shown(t) for t in targets], ["target", "measured", "goal", ""])


def write(
    name: str, args: argparse.Namespace, results: dict[str, Any], targets: list[dict[str, Any]], started: float
) -> Path:
    """``bench/results/<name>.json``: arguments, machine, results, targets, seconds taken."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {
        "name": name,
        "quick": bool(args.quick),
        "args": vars(args),
        "machine": machine(),
        "results": results,
        "targets": targets,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.write_text(json.dumps(payload, indent=2, default=str))
    if targets:
        print(targets_table(targets))
    print(f"wrote {out}", flush=True)
    return out


def start_serve(
    python: str | Path, cwd: Path, name: str, base_path: Path, *flags: str
) -> tuple[subprocess.Popen, int, int]:
    """`serving.server.main` of the checkout at `cwd`, run by `python`, on free loopback ports;
    returns the process and its gRPC and REST ports once it says REST is up."""
    grpc_port, rest_port = free_port(), free_port()
    code = "import sys; from serving.server import main; sys.exit(main(sys.argv[1:], ''))"
    argv = [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={name}",
        f"--model_base_path={base_path}",
        *flags,
    ]
    proc = subprocess.Popen(
        [str(python), "-c", code, *argv],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    for line in proc.stdout:
        if "Exporting HTTP/REST API" in line:
            return proc, grpc_port, rest_port
    raise RuntimeError(f"{cwd}: server did not start (exit code {proc.wait()})")
