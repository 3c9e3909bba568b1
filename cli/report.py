"""``mnist-tfx report``: write the HTML report of the latest pipeline run; prints the page's path.

Layout: ``<out>/report.html`` (everything embedded) beside the same pictures as PNG files; ``<out>``
defaults to ``<home>/reports/<run id>/`` (a local folder: a URI home needs ``--out``). The run's
artifacts are read where they are, a local path or a URI; MLMD is read from its local SQLite file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.run import add_location_flags, config_from_args


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mnist-tfx report", description="Write an HTML report of the latest run.")
    add_location_flags(parser)
    parser.add_argument("--out", help="output directory, local (default <home>/reports/<run id>/)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = vars(args).pop("out")  # the rest are the run's location flags
    out = Path(out) if out else None
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not isinstance(config.metadata_path, Path):
        print(
            f"error: the report reads MLMD from a local SQLite file; {config.metadata_path or 'none'} is not one "
            f"(set --metadata-path)",
            file=sys.stderr,
        )
        return 2
    if out is None and not isinstance(config.home, Path):
        print(f"error: home {config.home} is a URI and the report is written locally: set --out DIR", file=sys.stderr)
        return 2
    from reports import report

    run_id = report.latest_run_id(config)
    if run_id is None:
        print(f"error: no pipeline run recorded in {config.metadata_path}", file=sys.stderr)
        return 2
    print(report.write_report(config, run_id, out or report.default_out(config, run_id)))
    return 0
