"""`mnist-tfx serve`'s flags (tensorflow_model_server's names) and what they configure.

Imports no TensorFlow, so `mnist-tfx serve --help` and flag errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Iterable

from serving.batching import parse_batching_parameters


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One served model: name, base path, version policy and version labels."""

    name: str
    base_path: str
    policy: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1  # for "latest"
    versions: frozenset[int] = frozenset()  # for "specific"
    labels: tuple[tuple[str, int], ...] = ()

    def aspired(self, on_disk: Iterable[int]) -> set[int]:
        """The versions this policy wants served, out of those on disk."""
        available = sorted(on_disk, reverse=True)
        if self.policy == "all":
            return set(available)
        if self.policy == "specific":
            return self.versions & set(available)
        return set(available[: self.num_versions])


DEFAULT_MODEL_NAME = "mnist"
DEFAULT_SAVED_MODEL_TAGS = "serve"  # tensorflow::kSavedModelTagServe
MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass
class ServerOptions:
    """Everything the server needs; built from TF Serving's flags by `parse_args`."""

    models: list[ModelConfig]
    port: int = 8500
    rest_api_port: int = 8501
    rest_api_host: str = "127.0.0.1"
    file_system_poll_wait_seconds: float = 1.0
    batching_parameters_text: str | None = None  # None: batching off
    rest_api_timeout_in_ms: int = 30000
    rest_api_num_threads: int = max(16, 4 * (os.cpu_count() or 1))
    max_request_bytes: int = MAX_REQUEST_BYTES
    # Loading, warmup and per-model batching (TF Serving's flags of the same names).
    saved_model_tags: tuple[str, ...] = (DEFAULT_SAVED_MODEL_TAGS,)
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    enable_per_model_batching_parameters: bool = False


def _bool_flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser(default_model_base_path: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-tfx serve",
        description="Serve SavedModels over the TensorFlow Serving REST and gRPC APIs.")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    parser.add_argument("--rest_api_port", type=int, default=8501,
                        help="REST port (default 8501; 0 disables REST)")
    parser.add_argument("--rest_api_host", default="127.0.0.1",
                        help="address REST and gRPC listen on (default 127.0.0.1)")
    parser.add_argument("--model_name", default=DEFAULT_MODEL_NAME,
                        help=f"name of the served model (default {DEFAULT_MODEL_NAME})")
    parser.add_argument("--model_base_path", default=default_model_base_path,
                        help=f"directory of numeric version subdirectories "
                             f"(default {default_model_base_path})")
    parser.add_argument("--model_config_file", default="",
                        help="text-format ModelServerConfig; overrides --model_name/--model_base_path")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="seconds between polls of the base paths (0: poll once)")
    parser.add_argument("--enable_batching", type=_bool_flag, nargs="?", const=True, default=False,
                        help="merge concurrent requests into batches")
    parser.add_argument("--batching_parameters_file", default="",
                        help="text-format BatchingParameters (every TF Serving field)")
    parser.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                        help="REST request timeout (default 30000; <= 0: none)")
    parser.add_argument("--rest_api_num_threads", type=int, default=ServerOptions.rest_api_num_threads,
                        help="threads running REST and gRPC requests")
    # --- loading, warmup and per-model batching flags (one block; keep together) ---
    parser.add_argument("--saved_model_tags", default=DEFAULT_SAVED_MODEL_TAGS,
                        help="comma-separated tag set of the MetaGraphDef to load "
                             f"(default {DEFAULT_SAVED_MODEL_TAGS})")
    parser.add_argument("--enable_model_warmup", type=_bool_flag, nargs="?", const=True, default=True,
                        help="replay assets.extra/tf_serving_warmup_requests before a version "
                             "serves (default true)")
    parser.add_argument("--num_request_iterations_for_warmup", type=int, default=1,
                        help="times each warmup record runs (default 1; used only if > 0)")
    parser.add_argument("--enable_per_model_batching_parameters", type=_bool_flag, nargs="?",
                        const=True, default=False,
                        help="with --enable_batching, batch a model only with the "
                             "batching_params.pbtxt in its version directory")
    # --- end of loading, warmup and per-model batching flags ---
    return parser


def parse_args(argv: list[str], default_model_base_path: str) -> ServerOptions:
    """TF Serving's flags -> ServerOptions (raises SystemExit/ValueError on bad input)."""
    args = build_parser(default_model_base_path).parse_args(argv)
    if args.model_config_file:
        from serving.model_manager import parse_model_server_config  # imports TensorFlow's protos

        with open(args.model_config_file) as f:
            models = parse_model_server_config(f.read())
    else:
        models = [ModelConfig(name=args.model_name, base_path=os.path.abspath(args.model_base_path))]
    batching_text = None
    if args.enable_batching:
        batching_text = ""
        if args.batching_parameters_file:
            with open(args.batching_parameters_file) as f:
                batching_text = f.read()
            parse_batching_parameters(batching_text)  # fail at startup, not on first request
    elif args.batching_parameters_file:
        raise ValueError("--batching_parameters_file needs --enable_batching")
    return ServerOptions(
        models=models, port=args.port, rest_api_port=args.rest_api_port,
        rest_api_host=args.rest_api_host,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        batching_parameters_text=batching_text,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        rest_api_num_threads=args.rest_api_num_threads,
        saved_model_tags=tuple(args.saved_model_tags.split(",")),
        enable_model_warmup=args.enable_model_warmup,
        num_request_iterations_for_warmup=max(args.num_request_iterations_for_warmup, 1),
        enable_per_model_batching_parameters=args.enable_per_model_batching_parameters)
