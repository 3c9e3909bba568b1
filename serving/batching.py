"""Server-side batching: concurrent requests to one signature run as one batch.

Like TF Serving's BasicBatchScheduler: requests with the same servable, signature and
per-example input shapes queue together; a batch is closed when it holds
`max_batch_size` examples or `batch_timeout_micros` after its first request, then runs
on one of `num_batch_threads` threads and its outputs are split back by row counts.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Mapping

import numpy as np

Run = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """The subset of TF Serving's BatchingParameters this server honours."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    num_batch_threads: int = 4


_FIELD = re.compile(r"(\w+)\s*(?::\s*(-?\d+)|\{\s*value\s*:\s*(-?\d+)\s*\})")


def parse_batching_parameters(text: str) -> BatchingParameters:
    """Parses a text-format BatchingParameters file (`name { value: N }` or `name: N`)."""
    known = {f.name for f in dataclasses.fields(BatchingParameters)}
    values: dict[str, int] = {}
    remainder = _FIELD.sub("", re.sub(r"#.*", "", text)).strip()
    if remainder:
        raise ValueError(f"Cannot parse batching parameters near: {remainder[:60]!r}")
    for match in _FIELD.finditer(re.sub(r"#.*", "", text)):
        name, value = match.group(1), int(match.group(2) or match.group(3))
        if name not in known:
            raise ValueError(f"Unsupported batching parameter: {name} "
                             f"(supported: {', '.join(sorted(known))})")
        if value <= 0 and name != "batch_timeout_micros":
            raise ValueError(f"Batching parameter {name} must be positive, got {value}")
        values[name] = value
    return BatchingParameters(**values)


@dataclasses.dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: Future


class _Queue:
    """Open batch for one batching key."""

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.rows = 0
        self.deadline = 0.0


class Batcher:
    """Merges concurrent `run` calls that share a key into batched runs."""

    def __init__(self, params: BatchingParameters) -> None:
        self._params = params
        self._pool = ThreadPoolExecutor(params.num_batch_threads, thread_name_prefix="batch")
        self._queues: dict[tuple, tuple[_Queue, Run]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._scheduler = threading.Thread(target=self._schedule, name="batch-scheduler", daemon=True)
        self._scheduler.start()

    def run(self, key: tuple, inputs: Mapping[str, np.ndarray], run: Run) -> dict[str, np.ndarray]:
        """Runs `run(inputs)`, possibly merged with other requests that share `key`."""
        rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        if len(rows) != 1 or -1 in rows or not inputs:
            return run(inputs)  # not batchable: scalars or inconsistent batch sizes
        (n,) = rows
        if n >= self._params.max_batch_size:
            return run(inputs)
        shapes = tuple(sorted((k, a.dtype.str, a.shape[1:]) for k, a in inputs.items()))
        task = _Task(inputs, n, Future())
        with self._cond:
            if self._closed:
                raise RuntimeError("Batcher is shut down")
            full_key = (key, shapes)
            queue, _ = self._queues.get(full_key, (None, None))
            if queue is not None and queue.rows + n > self._params.max_batch_size:
                self._dispatch(full_key)
                queue = None
            if queue is None:
                queue = _Queue()
                queue.deadline = time.monotonic() + self._params.batch_timeout_micros / 1e6
                self._queues[full_key] = (queue, run)
                self._cond.notify()  # a new deadline for the scheduler; joining a batch needs none
            queue.tasks.append(task)
            queue.rows += n
            if queue.rows >= self._params.max_batch_size:
                self._dispatch(full_key)
        return task.future.result()

    def _dispatch(self, key: tuple) -> None:
        """Hands the open batch for `key` to a batch thread (lock held)."""
        queue, run = self._queues.pop(key)
        self._pool.submit(self._execute, queue.tasks, run)

    def _schedule(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for key in [k for k, (q, _) in self._queues.items() if q.deadline <= now]:
                    self._dispatch(key)
                deadlines = [q.deadline for q, _ in self._queues.values()]
                self._cond.wait(max(0.0, min(deadlines) - now) if deadlines else None)

    @staticmethod
    def _execute(tasks: list[_Task], run: Run) -> None:
        if len(tasks) == 1:
            try:
                tasks[0].future.set_result(run(tasks[0].inputs))
            except BaseException as e:  # noqa: BLE001 - the waiter re-raises it
                tasks[0].future.set_exception(e)
            return
        try:
            merged = {k: np.concatenate([t.inputs[k] for t in tasks]) for k in tasks[0].inputs}
            outputs = run(merged)
        except Exception:  # noqa: BLE001 - one bad request must not fail the others
            outputs = None
        total = sum(t.rows for t in tasks)
        if outputs is None or any(o.ndim == 0 or o.shape[0] != total for o in outputs.values()):
            for t in tasks:  # failed, or outputs without a batch dimension: one by one
                Batcher._execute([t], run)
            return
        offset = 0
        for t in tasks:
            t.future.set_result({k: o[offset:offset + t.rows] for k, o in outputs.items()})
            offset += t.rows

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for key in list(self._queues):
                self._dispatch(key)
            self._cond.notify()
        self._scheduler.join()
        self._pool.shutdown(wait=True)
