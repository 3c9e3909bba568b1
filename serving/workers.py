"""`--num_server_processes N` (an mnist-tfx extension): N processes serve the same ports.

One Python process is bound by its GIL (JSON, aiohttp, TensorFlow's Python call wrapper), so on
a machine with several cores N processes answer more requests. Each worker is a whole server
(its own models, batcher and metrics) listening on the REST and gRPC ports with SO_REUSEPORT;
the kernel spreads connections over them. The parent only supervises: it says it serves once
every worker does, passes SIGINT/SIGTERM on to all of them, and when one dies it stops the
others and exits 1 naming it (no restart: a worker that died once would likely die again, and a
silent restart would hide that).
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import sys
import threading
from typing import Callable, Iterable

from serving.options import ServerOptions

FLAG = "--num_server_processes"
STOP_GRACE_SECONDS = 30.0  # after SIGTERM, before a worker is killed
_POLL_SECONDS = 0.2


# server.serve: (options, extra_routes, shared_ports=, on_ready=) -> exit code; passed in, as
# server imports this module.
Serve = Callable[..., int]


def _worker(
    index: int, serve: Serve, options: ServerOptions, extra_routes: tuple, ready: multiprocessing.Queue
) -> None:
    """One worker process: a whole server on shared ports; reports `index` once serving."""
    from serving.limits import configure_rate_limited_logging

    configure_rate_limited_logging("%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(serve(options, extra_routes, shared_ports=True, on_ready=lambda: ready.put(index)))


def supervise(
    options: ServerOptions, extra_routes: Iterable[Callable], serve: Serve, announce: Callable[[], None]
) -> int:
    """Starts the workers (each runs `serve`), calls `announce` once all serve, and waits for a
    signal or a death."""
    if options.grpc_socket_path:
        print(f"mnist-tfx serve: error: {FLAG} > 1 cannot share --grpc_socket_path", file=sys.stderr)
        return 2
    context = multiprocessing.get_context("spawn")  # never fork a process that has loaded TensorFlow
    ready = context.Queue()
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    workers = [
        context.Process(target=_worker, args=(i, serve, options, tuple(extra_routes), ready), name=f"serve-worker-{i}")
        for i in range(options.num_server_processes)
    ]
    serving: set[int] = set()
    code = 0
    try:
        for worker in workers:
            worker.start()
        while not stop.is_set():
            dead = next((w for w in workers if w.exitcode is not None), None)
            if dead is not None:
                print(
                    f"mnist-tfx serve: worker {workers.index(dead)} (pid {dead.pid}) exited with code "
                    f"{dead.exitcode}; stopping the other workers",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
                break
            try:
                serving.add(ready.get(timeout=_POLL_SECONDS))
            except queue.Empty:
                continue
            if len(serving) == len(workers):
                announce()
        else:
            print("Shutting down ...", flush=True)
    finally:
        _stop_all(workers)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _stop_all(workers: list[multiprocessing.Process]) -> None:
    """SIGTERM to every live worker (each finishes its in-flight requests), then waits; kills
    one that has not stopped within STOP_GRACE_SECONDS."""
    for worker in workers:
        if worker.exitcode is None and worker.pid is not None:
            worker.terminate()
    for worker in workers:
        if worker.pid is None:
            continue
        worker.join(STOP_GRACE_SECONDS)
        if worker.exitcode is None:
            worker.kill()
            worker.join()
