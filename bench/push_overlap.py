"""Two processes push different models to one serving base directory at once: do both publish?

    python -m bench.push_overlap [--tries 3] [--files 6004]

Each try makes two models of ``--files`` files, forks two processes that start pushing at the same
moment, then prints what each push returned (or how it crashed, with its seconds), the versions
in the base directory and how many files each holds (a complete version holds ``--files``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from components import pusher


def make_model(root: Path, tag: str, files: int) -> Path:
    model = root / tag
    for i in range(files):
        directory = model / "variables" / str(i % 50)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / str(i)).write_bytes(tag.encode() * 100)
    return model


def push(model: Path, base: Path, start: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    start.wait()
    started = time.monotonic()
    try:
        outcome = ("pushed", pusher.push_atomically(model, base))
    except BaseException as e:  # noqa: BLE001 - the crash is the measurement
        outcome = ("crashed", f"{type(e).__name__}: {str(e)[:100]}")
    results.put((*outcome, round(time.monotonic() - started, 1)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tries", type=int, default=3)
    p.add_argument("--files", type=int, default=6004, help="files per model (default %(default)s, as in issue 13)")
    args = p.parse_args()
    context = multiprocessing.get_context("fork")
    for attempt in range(1, args.tries + 1):
        with tempfile.TemporaryDirectory() as tmp:
            root, base = Path(tmp), Path(tmp) / "base"
            models = [make_model(root, f"m{i}", args.files) for i in range(2)]
            start, results = context.Barrier(2), context.Queue()
            processes = [context.Process(target=push, args=(m, base, start, results)) for m in models]
            for process in processes:
                process.start()
            outcomes = [results.get(timeout=900) for _ in processes]
            for process in processes:
                process.join()
            versions = pusher.numeric_versions(base)
            files = [sum(1 for f in (base / str(v)).rglob("*") if f.is_file()) for v in versions]
            print(f"try {attempt}: {outcomes}; versions {versions}, files per version {files}", flush=True)


if __name__ == "__main__":
    main()
