"""``mnist-tfx report``: write the HTML report of the latest pipeline run; prints the page's path.

Layout: ``<out>/report.html`` (everything embedded) beside the same pictures as PNG files; ``<out>``
defaults to ``<home>/reports/<run id>/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import configs


def parse_args(argv: list[str], default_home: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mnist-tfx report", description="Write an HTML report of the latest run.")
    parser.add_argument("--home", default=default_home, help=f"the pipeline's home (default {default_home})")
    parser.add_argument("--out", help="output directory (default <home>/reports/<run id>/)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv, str(configs.default_home()))
    config = configs.PipelineConfig(home=Path(args.home))
    from reports import report

    run_id = report.latest_run_id(config)
    if run_id is None:
        print(f"error: no pipeline run recorded in {config.metadata_path}", file=sys.stderr)
        return 2
    print(report.write_report(config, run_id, Path(args.out) if args.out else report.default_out(config, run_id)))
    return 0
