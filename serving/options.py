"""`mnist-tfx serve`'s flags (tensorflow_model_server's names) and what they configure.

Imports no TensorFlow, so `mnist-tfx serve --help` and flag errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from serving.batching import parse_batching_parameters
from serving.model_config import ModelConfig

DEFAULT_MODEL_NAME = "default"  # tensorflow_model_server's; `mnist-tfx serve` passes its own
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


def _bool_flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser(default_model_base_path: str,
                 default_model_name: str = DEFAULT_MODEL_NAME) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-tfx serve",
        description="Serve SavedModels over the TensorFlow Serving REST and gRPC APIs.")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    parser.add_argument("--rest_api_port", type=int, default=8501,
                        help="REST port (default 8501; 0 disables REST)")
    parser.add_argument("--rest_api_host", default="127.0.0.1",
                        help="address REST and gRPC listen on (default 127.0.0.1)")
    parser.add_argument("--model_name", default=default_model_name,
                        help=f"name of the served model (default {default_model_name})")
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
                        help="text-format BatchingParameters: max_batch_size, "
                             "batch_timeout_micros, num_batch_threads")
    parser.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                        help="REST request timeout (default 30000; <= 0: none)")
    parser.add_argument("--rest_api_num_threads", type=int, default=ServerOptions.rest_api_num_threads,
                        help="threads running REST and gRPC requests")
    return parser


def parse_args(argv: list[str], default_model_base_path: str,
               default_model_name: str = DEFAULT_MODEL_NAME) -> ServerOptions:
    """TF Serving's flags -> ServerOptions (raises SystemExit/ValueError on bad input)."""
    args = build_parser(default_model_base_path, default_model_name).parse_args(argv)
    if args.model_config_file:
        from serving.model_config import parse_model_server_config  # imports TensorFlow's protos

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
        rest_api_num_threads=args.rest_api_num_threads)
