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
from typing import Callable, Iterable

import grpc
from aiohttp import web

from serving.batching import BATCHING_PARAMS_FILENAME, Batcher, BatchingParameters, parse_batching_parameters
from serving.config_poller import ConfigFilePoller
from serving.core import ServingCore
from serving.grpc_services import add_services
from serving.limits import InFlightLimiter, configure_rate_limited_logging, grpc_arguments
from serving.metrics import Metrics
from serving.model_config import path_exists, read_regular_file
from serving.model_manager import ModelManager
from serving.options import DEFAULT_MODEL_NAME, ServerOptions, parse_args, version_text
from serving.rest import AddRoutes, create_app
from serving.rest_connections import GuardedAppRunner
from serving.servable import Servable
from serving.status import Code, ServingError
from serving.warmup import run_warmup

log = logging.getLogger(__name__)


def host_port(host: str, port: int) -> str:
    """ "host:port", with an IPv6 host in brackets ("[::1]:8500"), as gRPC and URLs need."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ModelServer:
    """Model manager + core + gRPC server + REST server; `start()` returns once serving."""

    def __init__(
        self, options: ServerOptions, extra_routes: Iterable[AddRoutes] = (), shared_ports: bool = False
    ) -> None:
        self.options = options
        self._shared_ports = shared_ports  # a --num_server_processes worker: SO_REUSEPORT, no announcement
        self._extra_routes = tuple(extra_routes)
        self.metrics = Metrics()
        self._batching = (
            parse_batching_parameters(options.batching_parameters_text)
            if options.batching_parameters_text is not None
            else None
        )
        self._batcher = Batcher(self._batching) if self._batching is not None else None
        self.manager = ModelManager(
            options.models,
            self._load,
            options.file_system_poll_wait_seconds,
            retries=options.load_retries,
            allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
        )
        self.core = ServingCore(
            self.manager, self._batcher, options.limits, options.enable_serialization_as_tensor_content
        )
        self._in_flight = InFlightLimiter(options.limits.max_in_flight_requests_per_model)
        self._executor = ThreadPoolExecutor(options.rest_api_num_threads, thread_name_prefix="rest")
        self._config_poller = (
            ConfigFilePoller(options.model_config_file, self.manager, options.model_config_file_poll_wait_seconds)
            if options.model_config_file and options.model_config_file_poll_wait_seconds > 0
            else None
        )
        self._health = None
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
        if not path_exists(own):
            return None
        try:
            return parse_batching_parameters(read_regular_file(own).decode())
        except (OSError, ValueError) as e:
            raise ServingError(Code.INVALID_ARGUMENT, f"{own}: {e}") from e

    def _load(self, name: str, version: int, path: str) -> Servable:
        """Loads a version into its session, then replays its warmup requests (the version
        becomes AVAILABLE only after both succeed)."""
        servable = Servable(
            name,
            version,
            path,
            tags=self.options.saved_model_tags,
            session_config=session_config(self.options),
            batching=self._batching_for(path),
        )
        if self.options.enable_model_warmup:
            try:
                run_warmup(self.core, servable, self.options.num_request_iterations_for_warmup, self.metrics)
            except Exception:
                servable.close()
                raise
        return servable

    @property
    def grpc_address(self) -> str:
        return host_port(self.options.rest_api_host, self.options.port)

    @property
    def rest_address(self) -> str:
        return host_port(self.options.rest_api_host, self.options.rest_api_port)

    def start(self) -> None:
        """Loads the models, then starts listening (gRPC, and REST unless its port is 0)."""
        configure_tensorflow_threads(self.options)
        self.manager.start()
        if self._config_poller is not None:
            self._config_poller.start()
        limits = self.options.limits
        self._grpc = grpc.server(
            ThreadPoolExecutor(self.options.grpc_max_threads, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", limits.max_request_bytes),
                ("grpc.max_send_message_length", limits.max_request_bytes),
                ("grpc.so_reuseport", int(self._shared_ports)),
                *grpc_arguments(limits.grpc_channel_arguments).items(),
            ],
        )
        add_services(self._grpc, self.core, self.metrics, self._in_flight)
        if self.options.enable_grpc_healthcheck_service:
            self._health = add_health_service(self._grpc)
        if self.options.port and self._grpc.add_insecure_port(self.grpc_address) == 0:
            raise OSError(f"Cannot listen for gRPC on {self.grpc_address}")
        socket_path = self.options.grpc_socket_path
        if socket_path and self._grpc.add_insecure_port(f"unix:{socket_path}") == 0:
            raise OSError(f"Cannot listen for gRPC on UNIX socket {socket_path}")
        self._grpc.start()
        if self.options.rest_api_port:
            self._start_rest()
        if not self._shared_ports:
            announce(self.options)

    def _start_rest(self) -> None:
        self._loop = new_event_loop()
        app = create_app(
            self.core,
            self.metrics,
            self._executor,
            self.options.rest_api_timeout_in_ms,
            self.options.limits,
            self._in_flight,
            metrics_path=self.options.prometheus_path,
            extra_routes=self._extra_routes,
            cors_headers=self.options.rest_api_enable_cors_support,
        )
        self._runner = GuardedAppRunner(app, self.options.limits, access_log=None, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(
            self._runner,
            self.options.rest_api_host,
            self.options.rest_api_port,
            reuse_address=True,
            reuse_port=self._shared_ports or None,
        )
        self._loop.run_until_complete(site.start())
        self._thread = threading.Thread(target=self._loop.run_forever, name="rest-loop", daemon=True)
        self._thread.start()

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stops listening, lets in-flight requests finish, then unloads the models."""
        if self._config_poller is not None:
            self._config_poller.stop()
        if self._health is not None:
            self._health.enter_graceful_shutdown()
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


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv: fewer Python steps per request and connection), or asyncio's
    own where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def announce(options: ServerOptions) -> None:
    """TF Serving's lines saying where it serves (scripts wait for the REST one)."""
    if options.port:
        print(f"Running gRPC ModelServer at {host_port(options.rest_api_host, options.port)} ...", flush=True)
    if options.grpc_socket_path:
        print(f"Running gRPC ModelServer at UNIX socket {options.grpc_socket_path} ...", flush=True)
    if options.rest_api_port:
        print(f"Exporting HTTP/REST API at:{host_port(options.rest_api_host, options.rest_api_port)} ...", flush=True)


def session_config(options: ServerOptions):
    """Each version's session ConfigProto: --tensorflow_{intra,inter}_op_parallelism (0: TF decides)."""
    from tensorflow.core.protobuf import config_pb2

    return config_pb2.ConfigProto(
        intra_op_parallelism_threads=options.tensorflow_intra_op_parallelism,
        inter_op_parallelism_threads=options.tensorflow_inter_op_parallelism,
    )


def configure_tensorflow_threads(options: ServerOptions) -> None:
    """--tensorflow_{intra,inter}_op_parallelism, set before any model loads (0: TF decides)."""
    if options.tensorflow_intra_op_parallelism or options.tensorflow_inter_op_parallelism:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(options.tensorflow_intra_op_parallelism)
        tf.config.threading.set_inter_op_parallelism_threads(options.tensorflow_inter_op_parallelism)


def add_health_service(server: grpc.Server):
    """grpc.health.v1.Health, SERVING for "" and TF Serving's two service names."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.HealthServicer()
    for service in ("", "ModelService", "PredictionService"):
        servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def _raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit, so the connection caps bind before it does."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(
    argv: list[str],
    default_model_base_path: str,
    default_model_name: str = DEFAULT_MODEL_NAME,
    extra_routes: Iterable[AddRoutes] = (),
) -> int:
    """Serves until SIGINT/SIGTERM; returns the exit code. The entry point supplies its defaults
    and plug-ins (`extra_routes`: REST routes of its own, such as a page)."""
    configure_rate_limited_logging("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = parse_args(argv, default_model_base_path, default_model_name)
    except SystemExit as e:  # --help, or a bad flag argparse has already reported in one line
        return int(e.code or 0)
    except Exception as e:  # noqa: BLE001 - any bad flag or config file: one line, exit 2
        print(f"mnist-tfx serve: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    if options.display_version:
        print(version_text())
        return 0
    _raise_open_files_limit()
    if options.num_server_processes > 1:
        from serving import workers

        return workers.supervise(options, extra_routes, serve, lambda: announce(options))
    return serve(options, extra_routes)


def serve(
    options: ServerOptions,
    extra_routes: Iterable[AddRoutes] = (),
    shared_ports: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Runs one server until SIGINT/SIGTERM; returns the exit code. `shared_ports`: one of
    several --num_server_processes workers, which calls `on_ready` once it serves."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    server = ModelServer(options, extra_routes, shared_ports)
    try:
        server.start()
    except (OSError, RuntimeError, ServingError) as e:
        print(
            f"mnist-tfx serve: Failed to start server. Error: "
            f"{e.status_string() if isinstance(e, ServingError) else e}",
            file=sys.stderr,
        )
        server.stop(0)
        return 1
    if on_ready is not None:
        on_ready()
    try:
        while not stop.wait(0.5):
            pass
        print("Shutting down ...", flush=True)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
