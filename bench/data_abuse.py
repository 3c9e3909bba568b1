"""Peak memory of `mnist-tfx data --source DIR` on abusive IDX files: a gzip bomb, /dev/zero, a FIFO.

    python -m bench.data_abuse [--bomb-mb 1024] [--timeout 60]

Each case runs `mnist-tfx data` in its own process (address space capped at 3 GiB, so the machine
stays safe whatever the code does) and reports the exit, the first error line, the peak RSS growth
over the process's state before the command (``ru_maxrss``) and the seconds it took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

from components.features import PIXELS_SHAPE
from components.idx import idx_header
from components.mnist_data import FILES, SIZES

REPO = Path(__file__).resolve().parents[1]
ADDRESS_SPACE_CAP = 3 << 30

_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from cli import data as data_cli
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
try:
    rc = data_cli.main(["--source", sys.argv[1], "--dest", sys.argv[2]], default_dest=sys.argv[2])
except BaseException as e:
    rc = f"{{type(e).__name__}}"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"rc": rc, "rss_growth_mb": (after - before) / 1024, "seconds": time.monotonic() - started}}))
"""


def write_gzip_bomb(path: Path, header: bytes, zero_bytes: int) -> None:
    """A gzip file of ``header`` then ``zero_bytes`` zeros, written in 1 MiB steps (~1 KB per MB)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    with path.open("wb") as f:
        f.write(compressor.compress(header))
        for start in range(0, zero_bytes, len(block)):
            f.write(compressor.compress(block[: zero_bytes - start]))
        f.write(compressor.flush())


def run_data_cli(source: Path, dest: Path, timeout: float = 60) -> dict[str, Any]:
    """`mnist-tfx data --source source --dest dest` in a child process: rc, stderr, peak RSS growth."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD.format(cap=ADDRESS_SPACE_CAP), str(source), str(dest)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"rc": "timeout", "stderr": "", "rss_growth_mb": None, "seconds": timeout}
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {"rc": f"died ({done.returncode})"}
    return {**result, "stderr": done.stderr.strip()}


def cases(root: Path, bomb_mb: int) -> dict[str, Path]:
    """Source directories, each with a train images file that is abusive in one way."""
    sources = {}
    for case in ("gzip bomb", "/dev/zero", "FIFO"):
        source = root / case.replace("/", "").replace(" ", "-")
        abusive = abusive_source(source)
        if case == "gzip bomb":
            write_gzip_bomb(abusive, idx_header((SIZES["train"], *PIXELS_SHAPE)), bomb_mb << 20)
        elif case == "/dev/zero":
            abusive.with_suffix("").symlink_to("/dev/zero")
        else:
            os.mkfifo(abusive.with_suffix(""))
        sources[case] = source
    return sources


def abusive_source(source: Path) -> Path:
    """Makes a source directory whose other three files are empty; returns the train images' path.

    `mnist-tfx data` reads the train images first, so the other files need only exist.
    """
    source.mkdir()
    for key, name in FILES.items():
        if key != ("train", "images"):
            (source / name).write_bytes(b"")
    return source / FILES["train", "images"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bomb-mb", type=int, default=1024, help="zeros inflated by the bomb (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60, help="seconds per case (default %(default)s)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for case, source in cases(Path(tmp), args.bomb_mb).items():
            size = sum(f.lstat().st_size for f in source.iterdir())
            result = run_data_cli(source, Path(tmp) / "dest", args.timeout)
            error = result["stderr"].splitlines()[-1][:160] if result["stderr"] else ""
            print(
                f"{case:<10} file {size:>9} B  rc {result['rc']!s:<12} peak RSS growth "
                f"{result['rss_growth_mb'] if result['rss_growth_mb'] is None else round(result['rss_growth_mb'])} MB"
                f"  {result['seconds']:.1f} s  {error}"
            )


if __name__ == "__main__":
    main()
