"""`mnist-tfx serve`'s flags (tensorflow_model_server's names) and what they configure.

Imports no TensorFlow, so `mnist-tfx serve --help` and flag errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import logging
import math
import os
from typing import NoReturn

from serving import limits as request_limits
from serving.batching import parse_batching_parameters
from serving.model_config import LoadRetries, ModelConfig, is_uri, parse_model_server_config, read_regular_file

DEFAULT_MODEL_NAME = "default"  # tensorflow_model_server's; `mnist-tfx serve` passes its own
DEFAULT_SAVED_MODEL_TAGS = "serve"  # tensorflow::kSavedModelTagServe


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
    num_server_processes: int = 1  # an mnist-tfx extension (serving/workers.py)
    limits: request_limits.Limits = request_limits.Limits()
    # Run-time config, gRPC and process flags (issue 11), in TF Serving's names and defaults.
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0  # 0: the config file is read once
    allow_version_labels_for_unavailable_models: bool = False
    load_retries: LoadRetries = LoadRetries()
    prometheus_path: str | None = None  # None: no metrics endpoint (no --monitoring_config_file)
    grpc_socket_path: str = ""
    grpc_max_threads: int = 4 * (os.cpu_count() or 1)
    enable_grpc_healthcheck_service: bool = False
    rest_api_enable_cors_support: bool = False
    enable_serialization_as_tensor_content: bool = False  # gRPC Predict outputs as tensor_content
    tensorflow_intra_op_parallelism: int = 0  # 0: TensorFlow chooses
    tensorflow_inter_op_parallelism: int = 0
    display_version: bool = False
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


class _OneLineErrors(argparse.ArgumentParser):
    """Flag errors as one line ("mnist-tfx serve: error: ...") and exit 2, without the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _port(text: str) -> int:
    if not (text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def build_parser(default_model_base_path: str, default_model_name: str = DEFAULT_MODEL_NAME) -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="mnist-tfx serve", description="Serve SavedModels over the TensorFlow Serving REST and gRPC APIs."
    )
    parser.add_argument("--port", type=_port, default=8500, help="gRPC port (default 8500)")
    parser.add_argument("--rest_api_port", type=_port, default=8501, help="REST port (default 8501; 0 disables REST)")
    parser.add_argument(
        "--rest_api_host", default="127.0.0.1", help="address REST and gRPC listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--model_name", default=default_model_name, help=f"name of the served model (default {default_model_name})"
    )
    parser.add_argument(
        "--model_base_path",
        default=default_model_base_path,
        help=f"directory of numeric version subdirectories, a local path or a URI such as gs://BUCKET/PATH "
        f"(default {default_model_base_path})",
    )
    parser.add_argument(
        "--model_config_file",
        default="",
        help="text-format ModelServerConfig; overrides --model_name/--model_base_path",
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=_seconds,
        default=1.0,
        help="seconds between polls of the base paths (0: poll once)",
    )
    parser.add_argument(
        "--enable_batching",
        type=_bool_flag,
        nargs="?",
        const=True,
        default=False,
        help="merge concurrent requests into batches",
    )
    parser.add_argument(
        "--batching_parameters_file", default="", help="text-format BatchingParameters (every TF Serving field)"
    )
    parser.add_argument(
        "--rest_api_timeout_in_ms", type=int, default=30000, help="REST request timeout (default 30000; <= 0: none)"
    )
    parser.add_argument(
        "--rest_api_num_threads",
        type=request_limits.positive_int,
        default=ServerOptions.rest_api_num_threads,
        help="threads running REST and gRPC requests",
    )
    parser.add_argument(
        "--num_server_processes",
        type=request_limits.positive_int,
        default=ServerOptions.num_server_processes,
        help="mnist-tfx extension: server processes sharing the REST and gRPC ports (SO_REUSEPORT), "
        "each with its own models and batcher (default 1)",
    )
    # Caps and timeouts (issue 13): one flag per serving.limits.Limits field.
    request_limits.add_flags(parser)
    _add_config_and_service_flags(parser)
    # --- loading, warmup and per-model batching flags (one block; keep together) ---
    parser.add_argument(
        "--saved_model_tags",
        default=DEFAULT_SAVED_MODEL_TAGS,
        help="comma-separated tag set of the MetaGraphDef to load " f"(default {DEFAULT_SAVED_MODEL_TAGS})",
    )
    parser.add_argument(
        "--enable_model_warmup",
        type=_bool_flag,
        nargs="?",
        const=True,
        default=True,
        help="replay assets.extra/tf_serving_warmup_requests before a version " "serves (default true)",
    )
    parser.add_argument(
        "--num_request_iterations_for_warmup",
        type=int,
        default=1,
        help="times each warmup record runs (default 1; used only if > 0)",
    )
    parser.add_argument(
        "--enable_per_model_batching_parameters",
        type=_bool_flag,
        nargs="?",
        const=True,
        default=False,
        help="with --enable_batching, batch a model only with the " "batching_params.pbtxt in its version directory",
    )
    # --- end of loading, warmup and per-model batching flags ---
    return parser


def _add_config_and_service_flags(parser: argparse.ArgumentParser) -> None:
    """Run-time config, retries, monitoring, gRPC and process flags (TF Serving's main.cc)."""
    defaults = ServerOptions(models=[])
    parser.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=int,
        default=defaults.model_config_file_poll_wait_seconds,
        help="seconds between reads of --model_config_file (0: read once)",
    )
    parser.add_argument(
        "--allow_version_labels_for_unavailable_models",
        type=_bool_flag,
        nargs="?",
        const=True,
        default=False,
        help="allow new version labels on versions not yet AVAILABLE",
    )
    parser.add_argument(
        "--max_num_load_retries",
        type=int,
        default=LoadRetries.max_num_load_retries,
        help="retries of a failed load before giving up (0: one attempt; default 5)",
    )
    parser.add_argument(
        "--load_retry_interval_micros",
        type=int,
        default=LoadRetries.load_retry_interval_micros,
        help="microseconds between load retries (default 1 minute; < 0: no wait)",
    )
    parser.add_argument(
        "--monitoring_config_file", default="", help="text-format MonitoringConfig: prometheus_config { enable path }"
    )
    parser.add_argument("--grpc_socket_path", default="", help="also serve gRPC on this UNIX socket")
    parser.add_argument(
        "--grpc_max_threads",
        type=int,
        default=defaults.grpc_max_threads,
        help=f"threads handling gRPC calls (default 4 x CPUs = {defaults.grpc_max_threads})",
    )
    parser.add_argument(
        "--enable_grpc_healthcheck_service",
        type=_bool_flag,
        nargs="?",
        const=True,
        default=False,
        help="serve the standard grpc.health.v1.Health service",
    )
    parser.add_argument(
        "--rest_api_enable_cors_support",
        type=_bool_flag,
        nargs="?",
        const=True,
        default=False,
        help="add CORS headers to REST responses",
    )
    parser.add_argument(
        "--enable_serialization_as_tensor_content",
        type=_bool_flag,
        nargs="?",
        const=True,
        default=False,
        help="gRPC Predict outputs in tensor_content instead of the typed value fields (float_val, ...)",
    )
    parser.add_argument(
        "--tensorflow_session_parallelism", type=int, default=0, help="sets both TensorFlow thread pools (0: auto)"
    )
    parser.add_argument(
        "--tensorflow_intra_op_parallelism", type=int, default=0, help="threads within one TensorFlow op (0: auto)"
    )
    parser.add_argument(
        "--tensorflow_inter_op_parallelism", type=int, default=0, help="TensorFlow ops run at once (0: auto)"
    )
    parser.add_argument(
        "--version", type=_bool_flag, nargs="?", const=True, default=False, help="print the version and exit"
    )
    for name, kind, default, why in IGNORED_FLAGS:
        parser.add_argument(
            f"--{name}",
            type=_bool_flag if kind is bool else kind,
            default=default,
            **({"nargs": "?", "const": True} if kind is bool else {}),
            help=f"accepted and ignored: {why}",
        )


# TF Serving flags accepted for drop-in compatibility that change nothing here: (name, type,
# TF Serving's default, why). A value other than the default is logged as ignored.
IGNORED_FLAGS: tuple[tuple[str, type, object, str], ...] = (
    ("num_load_threads", int, 0, "versions load one at a time on the poller thread (TF Serving's 0)"),
    ("num_unload_threads", int, 0, "unloading drops a reference; nothing to parallelise"),
    ("flush_filesystem_caches", bool, True, "no file system caches are kept after a load"),
    ("remove_unused_fields_from_bundle_metagraph", bool, True, "only the SignatureDefs of the MetaGraphDef are kept"),
    ("per_process_gpu_memory_fraction", float, 0.0, "the server runs on CPU"),
    ("skip_initialize_tpu", bool, False, "no TPU support"),
)


def version_text() -> str:
    """`--version`, in TF Serving's two lines."""

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    return f"TensorFlow ModelServer: mnist-tfx {version('mnist-tfx')}\n" f"TensorFlow Library: {version('tensorflow')}"


def _thread_options(args: argparse.Namespace) -> tuple[int, int]:
    """(intra, inter) op parallelism as TF Serving's server.cc combines the three flags."""
    intra, inter, both = (
        args.tensorflow_intra_op_parallelism,
        args.tensorflow_inter_op_parallelism,
        args.tensorflow_session_parallelism,
    )
    if intra > 0 and inter > 0 and both > 0:
        raise ValueError(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism) separately. "
            "You cannot configure all."
        )
    if intra > 0 or inter > 0:
        return intra, inter
    return both, both


def _config_and_service_options(args: argparse.Namespace) -> dict:
    """ServerOptions fields of `_add_config_and_service_flags`."""
    from serving.monitoring_config import prometheus_path

    prometheus = None
    if args.monitoring_config_file:
        with open(args.monitoring_config_file) as f:
            prometheus = prometheus_path(f.read(1024 * 1024))
    if args.port == 0 and not args.grpc_socket_path:
        raise ValueError("At least one of server_options.grpc_port or " "server_options.grpc_socket_path must be set.")
    if args.grpc_max_threads <= 0:
        raise ValueError("--grpc_max_threads must be positive")
    intra, inter = _thread_options(args)
    for name, _, default, why in IGNORED_FLAGS:
        if getattr(args, name) != default:
            logging.getLogger(__name__).warning("--%s=%s is ignored: %s", name, getattr(args, name), why)
    return dict(
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        load_retries=LoadRetries(max(0, args.max_num_load_retries), args.load_retry_interval_micros),
        prometheus_path=prometheus,
        grpc_socket_path=args.grpc_socket_path,
        grpc_max_threads=args.grpc_max_threads,
        enable_grpc_healthcheck_service=args.enable_grpc_healthcheck_service,
        rest_api_enable_cors_support=args.rest_api_enable_cors_support,
        enable_serialization_as_tensor_content=args.enable_serialization_as_tensor_content,
        tensorflow_intra_op_parallelism=intra,
        tensorflow_inter_op_parallelism=inter,
        display_version=args.version,
    )


def parse_args(
    argv: list[str], default_model_base_path: str, default_model_name: str = DEFAULT_MODEL_NAME
) -> ServerOptions:
    """TF Serving's flags -> ServerOptions (raises SystemExit/ValueError on bad input)."""
    args = build_parser(default_model_base_path, default_model_name).parse_args(argv)
    if args.version:
        return ServerOptions(models=[], display_version=True)
    limits = request_limits.from_args(args)
    if args.model_config_file:
        models = parse_model_server_config(read_regular_file(args.model_config_file).decode())
    else:
        base_path = args.model_base_path if is_uri(args.model_base_path) else os.path.abspath(args.model_base_path)
        models = [ModelConfig(name=args.model_name, base_path=base_path)]
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
        models=models,
        port=args.port,
        rest_api_port=args.rest_api_port,
        rest_api_host=args.rest_api_host,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        batching_parameters_text=batching_text,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        rest_api_num_threads=args.rest_api_num_threads,
        num_server_processes=args.num_server_processes,
        limits=limits,
        saved_model_tags=tuple(args.saved_model_tags.split(",")),
        enable_model_warmup=args.enable_model_warmup,
        num_request_iterations_for_warmup=max(args.num_request_iterations_for_warmup, 1),
        enable_per_model_batching_parameters=args.enable_per_model_batching_parameters,
        **_config_and_service_options(args),
    )
