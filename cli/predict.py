"""`mnist-tfx predict`: classify PNG/JPEG files or official test images with a served model.

Prints one line per image: its name, the predicted digit and that digit's probability.
Over REST (the default) it imports no TensorFlow; `--grpc HOST:PORT` uses gRPC instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator

import numpy as np

from components.features import (
    INPUT_IMAGE_BYTES,
    INPUT_IMAGES,
    MODEL_NAME,
    OUTPUT_CLASSES,
    OUTPUT_PROBABILITIES,
    SIGNATURE_IMAGE_BYTES,
    SIGNATURE_PIXELS,
)
from components.idx import DataFileError, read_idx
from components.mnist_data import FILES
from pipeline.configs import PipelineConfig
from serving.client import GrpcClient, RestClient, ServingClientError, b64

TEST_IMAGES_FILE = FILES["t10k", "images"]
TEST_LABELS_FILE = FILES["t10k", "labels"]
_CHUNK = 100  # images per request


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, _CHUNK):
        yield slice(start, min(start + _CHUNK, n))


def _best(probabilities: np.ndarray, classes: np.ndarray) -> list[tuple[int, float]]:
    return [(int(c), float(p[int(c)])) for p, c in zip(probabilities, classes)]


def predict_pixels_rest(client: RestClient, images: np.ndarray) -> list[tuple[int, float]]:
    """Digits for [n, 28, 28] pixel arrays (0..255) via the pixels signature."""
    out: list[tuple[int, float]] = []
    for part in _chunks(len(images)):
        rows = client.predict(instances=images[part].astype(float).tolist(), signature_name=SIGNATURE_PIXELS)
        out += _best(np.array([r[OUTPUT_PROBABILITIES] for r in rows]), np.array([r[OUTPUT_CLASSES] for r in rows]))
    return out


def predict_encoded_rest(client: RestClient, images: list[bytes]) -> list[tuple[int, float]]:
    """Digits for PNG/JPEG bytes via the image-bytes signature (sent as b64)."""
    out: list[tuple[int, float]] = []
    for part in _chunks(len(images)):
        rows = client.predict(instances=[b64(data) for data in images[part]], signature_name=SIGNATURE_IMAGE_BYTES)
        out += _best(np.array([r[OUTPUT_PROBABILITIES] for r in rows]), np.array([r[OUTPUT_CLASSES] for r in rows]))
    return out


def predict_grpc(client: GrpcClient, signature: str, key: str, batch: np.ndarray) -> list[tuple[int, float]]:
    """Digits for a batch of pixels or encoded images over gRPC."""
    out: list[tuple[int, float]] = []
    for part in _chunks(len(batch)):
        outputs = client.predict({key: batch[part]}, signature_name=signature)
        out += _best(outputs[OUTPUT_PROBABILITIES], outputs[OUTPUT_CLASSES])
    return out


def build_parser(default_data_dir: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-tfx predict", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="PNG or JPEG files")
    parser.add_argument(
        "--server",
        default="http://127.0.0.1:8501",
        help="REST address of the model server (default http://127.0.0.1:8501)",
    )
    parser.add_argument("--model", default=MODEL_NAME, help=f"model name (default {MODEL_NAME})")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="use gRPC at HOST:PORT instead of REST")
    parser.add_argument(
        "--test-images", type=int, metavar="N", help=f"classify the first N official test images ({TEST_IMAGES_FILE})"
    )
    parser.add_argument(
        "--data-dir",
        default=default_data_dir,
        help=f"directory holding {TEST_IMAGES_FILE} (default {default_data_dir})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    return parser


def main(argv: list[str], default_data_dir: str | None = None) -> int:
    """Entry point of `mnist-tfx predict` (data directory default: the home's); returns the exit code."""
    parser = build_parser(default_data_dir or str(PipelineConfig().data_dir))
    args = parser.parse_args(argv)
    if not args.images and not args.test_images:
        parser.error("give IMAGE files or --test-images N")
    if args.test_images is not None and args.test_images <= 0:
        parser.error("--test-images must be positive")
    try:
        encoded = []
        for path in args.images:
            with open(path, "rb") as f:
                encoded.append(f.read())
        pixels = labels = None
        if args.test_images:
            pixels = read_idx(os.path.join(args.data_dir, TEST_IMAGES_FILE), ndim=3)[: args.test_images]
            labels = read_idx(os.path.join(args.data_dir, TEST_LABELS_FILE), ndim=1)[: args.test_images]
    except (OSError, DataFileError) as e:
        print(f"mnist-tfx predict: {e}", file=sys.stderr)
        return 2
    try:
        if args.grpc:
            client = GrpcClient(args.grpc, args.model, args.timeout)
            file_results = (
                predict_grpc(client, SIGNATURE_IMAGE_BYTES, INPUT_IMAGE_BYTES, np.array(encoded, dtype=object))
                if encoded
                else []
            )
            test_results = (
                predict_grpc(client, SIGNATURE_PIXELS, INPUT_IMAGES, pixels.astype(np.float32))
                if pixels is not None
                else []
            )
        else:
            client = RestClient(args.server, args.model, args.timeout)
            file_results = predict_encoded_rest(client, encoded) if encoded else []
            test_results = predict_pixels_rest(client, pixels) if pixels is not None else []
    except ServingClientError as e:
        print(f"mnist-tfx predict: server error {e.code}: {e.message}", file=sys.stderr)
        return 1
    for path, (digit, prob) in zip(args.images, file_results):
        print(f"{path}\t{digit}\t{prob:.4f}")
    for i, (digit, prob) in enumerate(test_results):
        print(f"test[{i}]\t{digit}\t{prob:.4f}\tlabel={int(labels[i])}")
    if test_results:
        correct = sum(d == int(label) for (d, _), label in zip(test_results, labels))
        print(f"accuracy {correct}/{len(test_results)} = {correct / len(test_results):.4f}", file=sys.stderr)
    return 0
