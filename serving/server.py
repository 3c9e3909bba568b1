"""`mnist-tfx serve`: a TensorFlow Serving-compatible model server (REST + gRPC).

Flag names are tensorflow_model_server's. Runs until SIGINT/SIGTERM, then shuts down
cleanly: stops accepting, finishes in-flight requests, unloads the models.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from aiohttp import web

from serving.batching import BATCHING_PARAMS_FILENAME, Batcher, BatchingParameters, parse_batching_parameters
from serving.core import ServingCore
from serving.grpc_services import add_services
from serving.metrics import Metrics
from serving.model_manager import ModelManager
from serving.options import ServerOptions, parse_args
from serving.rest import create_app
from serving.servable import Servable
from serving.status import Code, ServingError
from serving.warmup import run_warmup

log = logging.getLogger(__name__)

class ModelServer:
    """Model manager + core + gRPC server + REST server; `start()` returns once serving."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = Metrics()
        self._batching = (parse_batching_parameters(options.batching_parameters_text)
                          if options.batching_parameters_text is not None else None)
        self._batcher = Batcher(self._batching) if self._batching is not None else None
        self.manager = ModelManager(options.models, self._load, options.file_system_poll_wait_seconds)
        self.core = ServingCore(self.manager, self._batcher)
        self._executor = ThreadPoolExecutor(options.rest_api_num_threads, thread_name_prefix="rest")
        self._grpc: grpc.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def _batching_for(self, path: str) -> BatchingParameters | None:
        """The version's batching: the server's, or with --enable_per_model_batching_parameters
        only its own batching_params.pbtxt (none: not batched), as TF Serving."""
        if self._batching is None or not self.options.enable_per_model_batching_parameters:
            return self._batching
        own = os.path.join(path, BATCHING_PARAMS_FILENAME)
        if not os.path.exists(own):
            return None
        try:
            with open(own) as f:
                return parse_batching_parameters(f.read())
        except (OSError, ValueError) as e:
            raise ServingError(Code.INVALID_ARGUMENT, f"{own}: {e}") from e

    def _load(self, name: str, version: int, path: str) -> Servable:
        """Loads a version into its session, then replays its warmup requests (the version
        becomes AVAILABLE only after both succeed)."""
        servable = Servable(name, version, path, tags=self.options.saved_model_tags,
                            batching=self._batching_for(path))
        if self.options.enable_model_warmup:
            try:
                run_warmup(self.core, servable, self.options.num_request_iterations_for_warmup, self.metrics)
            except Exception:
                servable.close()
                raise
        return servable

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
