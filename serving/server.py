"""`mnist-tfx serve`: a TensorFlow Serving-compatible model server (REST + gRPC).

Flag names are tensorflow_model_server's. Runs until SIGINT/SIGTERM, then shuts down
cleanly: stops accepting, finishes in-flight requests, unloads the models.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from aiohttp import web

from serving.batching import Batcher, parse_batching_parameters
from serving.core import ServingCore
from serving.grpc_services import add_services
from serving.metrics import Metrics
from serving.model_manager import ModelConfig, ModelManager, parse_model_server_config
from serving.rest import create_app
from serving.servable import Servable

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "mnist"
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


class ModelServer:
    """Model manager + core + gRPC server + REST server; `start()` returns once serving."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = Metrics()
        self._batcher = (Batcher(parse_batching_parameters(options.batching_parameters_text))
                         if options.batching_parameters_text is not None else None)
        self.manager = ModelManager(options.models, Servable, options.file_system_poll_wait_seconds)
        self.core = ServingCore(self.manager, self._batcher)
        self._executor = ThreadPoolExecutor(options.rest_api_num_threads, thread_name_prefix="rest")
        self._grpc: grpc.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def grpc_address(self) -> str:
        return f"{self.options.rest_api_host}:{self.options.port}"

    @property
    def rest_address(self) -> str:
        return f"{self.options.rest_api_host}:{self.options.rest_api_port}"

    def start(self) -> None:
        """Loads the models, then starts listening (gRPC, and REST unless its port is 0)."""
        self.manager.start()
        self._grpc = grpc.server(
            ThreadPoolExecutor(self.options.rest_api_num_threads, thread_name_prefix="grpc"),
            options=[("grpc.max_receive_message_length", self.options.max_request_bytes),
                     ("grpc.max_send_message_length", self.options.max_request_bytes),
                     ("grpc.so_reuseport", 0)])
        add_services(self._grpc, self.core, self.metrics)
        if self._grpc.add_insecure_port(self.grpc_address) == 0:
            raise OSError(f"Cannot listen for gRPC on {self.grpc_address}")
        self._grpc.start()
        print(f"Running gRPC ModelServer at {self.grpc_address} ...", flush=True)
        if self.options.rest_api_port:
            self._start_rest()
            print(f"Exporting HTTP/REST API at:{self.rest_address} ...", flush=True)

    def _start_rest(self) -> None:
        self._loop = asyncio.new_event_loop()
        app = create_app(self.core, self.metrics, self._executor,
                         self.options.rest_api_timeout_in_ms, self.options.max_request_bytes)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.options.rest_api_host, self.options.rest_api_port,
                           reuse_address=True)
        self._loop.run_until_complete(site.start())
        self._thread = threading.Thread(target=self._loop.run_forever, name="rest-loop", daemon=True)
        self._thread.start()

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stops listening, lets in-flight requests finish, then unloads the models."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._loop = None
        if self._grpc is not None:
            self._grpc.stop(grace_seconds).wait()
            self._grpc = None
        self._executor.shutdown(wait=True)
        if self._batcher is not None:
            self._batcher.close()
        self.manager.stop()


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
                        help="text-format BatchingParameters: max_batch_size, "
                             "batch_timeout_micros, num_batch_threads")
    parser.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                        help="REST request timeout (default 30000; <= 0: none)")
    parser.add_argument("--rest_api_num_threads", type=int, default=ServerOptions.rest_api_num_threads,
                        help="threads running REST and gRPC requests")
    return parser


def parse_args(argv: list[str], default_model_base_path: str) -> ServerOptions:
    """TF Serving's flags -> ServerOptions (raises SystemExit/ValueError on bad input)."""
    args = build_parser(default_model_base_path).parse_args(argv)
    if args.model_config_file:
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


def main(argv: list[str], default_model_base_path: str) -> int:
    """Entry point of `mnist-tfx serve`: serves until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = parse_args(argv, default_model_base_path)
    except (OSError, ValueError) as e:
        print(f"mnist-tfx serve: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    server = ModelServer(options)
    try:
        server.start()
    except (OSError, RuntimeError) as e:
        print(f"mnist-tfx serve: {e}", file=sys.stderr)
        server.stop(0)
        return 1
    try:
        while not stop.wait(0.5):
            pass
        print("Shutting down ...", flush=True)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
