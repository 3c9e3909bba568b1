"""Server-side batching: concurrent requests to one signature run as one batch.

Like TF Serving's batching session on a SharedBatchScheduler: requests with the same servable,
signature and per-example input shapes (only dtypes and ranks with `pad_variable_length_inputs`)
queue together; a batch is closed when it holds `max_batch_size` examples (or
`max_execution_batch_size` with `enable_large_batch_splitting`) or `batch_timeout_micros` after
its first request, then runs on one of `num_batch_threads` threads and its outputs are split back
by row counts. At most `max_enqueued_batches` batches wait per queue; a request that would need
one more is refused at once with UNAVAILABLE. A batch is padded up to the next
`allowed_batch_sizes` entry with copies of its last request's first row, as TF Serving does.

`--batching_parameters_file` is a text-format `tensorflow.serving.BatchingParameters`, parsed
with that message's schema (declared here: tensorflow-serving-api does not ship
session_bundle_config_pb2), so every field TF Serving knows is accepted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import re
import threading
import time
from concurrent.futures import Executor, Future
from typing import Any, Awaitable, Callable, Mapping

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from serving.status import Code, ServingError

log = logging.getLogger(__name__)

Run = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]

BATCHING_PARAMS_FILENAME = "batching_params.pbtxt"  # per-model file in a version directory
QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"
# Fields of TF Serving's BatchingParameters that change nothing here (one shared thread pool).
IGNORED_FIELDS = ("thread_pool_name",)

# tensorflow_serving/servables/tensorflow/session_bundle_config.proto, BatchingParameters.
_PROTO_FIELDS = (  # name, number, type, wrapper message (None: plain), repeated
    ("max_batch_size", 1, "Int64Value", False),
    ("batch_timeout_micros", 2, "Int64Value", False),
    ("max_enqueued_batches", 3, "Int64Value", False),
    ("num_batch_threads", 4, "Int64Value", False),
    ("thread_pool_name", 5, "StringValue", False),
    ("allowed_batch_sizes", 6, "int64", True),
    ("pad_variable_length_inputs", 7, "bool", False),
    ("enable_large_batch_splitting", 8, "BoolValue", False),
    ("max_execution_batch_size", 9, "Int64Value", False),
)


def _batching_parameters_class():
    """The BatchingParameters message class, built from the proto's field list above."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(
        descriptor_pb2.FileDescriptorProto.FromString(wrappers_pb2.DESCRIPTOR.serialized_pb).SerializeToString()
    )
    file = descriptor_pb2.FileDescriptorProto(
        name="mnist_tfx/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file.message_type.add(name="BatchingParameters")
    scalar = {
        "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    }
    for name, number, kind, repeated in _PROTO_FIELDS:
        field = message.field.add(
            name=name,
            number=number,
            label=(
                descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                if repeated
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            ),
        )
        if kind in scalar:
            field.type = scalar[kind]
        else:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
            field.type_name = f".google.protobuf.{kind}"
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


BatchingParametersProto = _batching_parameters_class()
_WRAPPED = {name for name, _, kind, _ in _PROTO_FIELDS if kind[0].isupper()}
# `name: N` for a wrapper field (TF Serving wants `name { value: N }`): accepted as a shorthand.
_SHORTHAND = re.compile(r"\b(" + "|".join(sorted(_WRAPPED)) + r")\s*:\s*(\"[^\"]*\"|[-\w.]+)")


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters with its defaults (SharedBatchScheduler's QueueOptions)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    num_batch_threads: int = 4
    max_enqueued_batches: int = 10
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0  # 0: max_batch_size (used only when splitting)
    thread_pool_name: str = ""

    @property
    def execution_batch_size(self) -> int:
        """The largest batch that runs: max_execution_batch_size when splitting, else max_batch_size."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size

    def validate(self) -> None:
        """Raises ValueError where TF Serving refuses these parameters (its wording)."""
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Batching parameter {name} must be positive, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(
                f"Batching parameter batch_timeout_micros must not be negative, " f"got {self.batch_timeout_micros}"
            )
        if self.enable_large_batch_splitting and self.execution_batch_size > self.max_batch_size:
            raise ValueError(
                f"max_execution_batch_size ({self.execution_batch_size}) must be less "
                f"than or equal to max_batch_size ({self.max_batch_size})"
            )
        sizes = self.allowed_batch_sizes
        if not sizes:
            return
        if any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[0] <= 0:
            raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
        if not self.enable_large_batch_splitting:
            if sizes[-1] != self.max_batch_size:
                raise ValueError(
                    f"Last entry in allowed_batch_sizes must match max_batch_size; last "
                    f"entry was {sizes[-1]}; expected {self.max_batch_size}"
                )
            return
        if sizes[-1] > self.max_batch_size:
            raise ValueError(
                f"Last entry in allowed_batch_sizes must be less than or equal to "
                f"max_batch_size; last entry was {sizes[-1]}; expected {self.max_batch_size}"
            )
        if sizes[-1] != self.execution_batch_size:
            raise ValueError(
                f"Last entry in allowed_batch_sizes must be equal to "
                f"max_execution_batch_size; last entry was {sizes[-1]}; expected "
                f"{self.execution_batch_size}"
            )


_ignored_logged: set[str] = set()


def parse_batching_parameters(text: str) -> BatchingParameters:
    """Parses and validates a text-format BatchingParameters (ValueError saying what is wrong)."""
    proto = BatchingParametersProto()
    try:
        text_format.Parse(_SHORTHAND.sub(r"\1 { value: \2 }", text), proto)
    except text_format.ParseError as e:
        raise ValueError(f"Error parsing text-format tensorflow.serving.BatchingParameters: {e}") from e
    values: dict = {}
    for name, _, _kind, repeated in _PROTO_FIELDS:
        if repeated:
            values[name] = tuple(getattr(proto, name))
        elif name in _WRAPPED:
            if proto.HasField(name):
                values[name] = getattr(proto, name).value
        else:
            values[name] = getattr(proto, name)
    params = BatchingParameters(**values)
    params.validate()
    for name in IGNORED_FIELDS:
        if name in values and name not in _ignored_logged:
            _ignored_logged.add(name)
            log.warning(
                "Batching parameter %s is accepted and ignored: all models share one pool " "of batch threads here",
                name,
            )
    return params


def round_to_allowed(sizes: tuple[int, ...], n: int) -> int:
    """The smallest allowed batch size >= n (n itself when none is, or none are set)."""
    for size in sizes:
        if size >= n:
            return size
    return n


def pad_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`array` padded at the end of each non-batch dimension up to `shape`, with its first
    element (TF Serving's batching_util PadTensor)."""
    if array.shape[1:] == shape:
        return array
    widths = [(0, 0)] + [(0, want - have) for have, want in zip(array.shape[1:], shape)]
    if array.dtype == object:  # np.pad's constant mode does not take object arrays
        out = np.empty((array.shape[0], *shape), dtype=object)
        out[...] = array.flat[0] if array.size else b""
        out[tuple(slice(0, d) for d in array.shape)] = array
        return out
    return np.pad(array, widths, mode="constant", constant_values=array.flat[0] if array.size else 0)


@dataclasses.dataclass
class _Task:
    """One request in a batch. `future` is a concurrent Future (a thread blocks on it) or an
    asyncio Future of `loop` (a coroutine awaits it; resolved on its loop, once per batch)."""

    inputs: Mapping[str, np.ndarray]
    rows: int
    future: Future | asyncio.Future
    loop: asyncio.AbstractEventLoop | None = None


class _Queue:
    """Batches for one batching key: the open one and how many closed ones wait for a thread."""

    def __init__(self, key: tuple, params: BatchingParameters, run: Run) -> None:
        self.key = key
        self.params = params
        self.run = run
        self.open: list[_Task] = []
        self.rows = 0
        self.deadline = 0.0
        self.waiting = 0  # closed batches not yet picked up by a batch thread


class Batcher:
    """Merges concurrent requests that share a key into batched runs.

    As TF Serving's SharedBatchScheduler: `num_batch_threads` threads take batches themselves:
    a closed (full) batch first, oldest first; else the open batch whose timeout passed longest
    ago, closing it then. So a batch whose timeout passes while every thread is busy stays open
    and keeps growing until a thread is free to run it, and no thread stands between the
    timeout and the run. `run` blocks its thread until the batch has run (gRPC, warmup);
    `submit_async` returns an asyncio Future instead, so a REST request waits on the event loop
    and parks no thread: a finished batch wakes each loop once for all of its requests.
    """

    def __init__(self, params: BatchingParameters) -> None:
        self._params = params
        self._queues: dict[tuple, _Queue] = {}
        self._ready: collections.deque[tuple[_Queue, list[_Task], Run]] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True) for i in range(params.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(
        self, key: tuple, inputs: Mapping[str, np.ndarray], run: Run, params: BatchingParameters | None = None
    ) -> dict[str, np.ndarray]:
        """Runs `run(inputs)`, possibly merged with other requests that share `key`; `params`
        (a model's own batching_params.pbtxt) override the server's queue parameters."""
        params = params or self._params
        pieces = _pieces(inputs, params)
        if pieces is None:
            return run(inputs)  # not batchable: scalars or inconsistent batch sizes
        futures = [self._enqueue(key, piece, rows, run, params, Future()) for piece, rows in pieces]
        return _concatenate([f.result() for f in futures])

    def submit_async(
        self,
        key: tuple,
        inputs: Mapping[str, np.ndarray],
        run: Run,
        executor: Executor,
        params: BatchingParameters | None = None,
    ) -> asyncio.Future:
        """`run` as an asyncio Future of the running loop (unbatchable inputs run in `executor`).
        Refusals (queue full, too large) raise here, before anything is queued for them."""
        params = params or self._params
        loop = asyncio.get_running_loop()
        pieces = _pieces(inputs, params)
        if pieces is None:
            return loop.run_in_executor(executor, run, inputs)
        futures = [self._enqueue(key, piece, rows, run, params, loop.create_future(), loop) for piece, rows in pieces]
        if len(futures) == 1:
            return futures[0]
        gathered = asyncio.gather(*futures)
        return asyncio.ensure_future(_concatenate_later(gathered))

    def _enqueue(
        self,
        key: tuple,
        inputs: Mapping[str, np.ndarray],
        n: int,
        run: Run,
        params: BatchingParameters,
        future: Future | asyncio.Future,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Future | asyncio.Future:
        """Adds one task of `n` rows to its queue's open batch (closing batches as they fill)."""
        if params.pad_variable_length_inputs:
            shapes = tuple(sorted((k, a.dtype.str, a.ndim) for k, a in inputs.items()))
        else:
            shapes = tuple(sorted((k, a.dtype.str, a.shape[1:]) for k, a in inputs.items()))
        limit = params.execution_batch_size
        task = _Task(inputs, n, future, loop)
        full_key = (key, shapes, params)
        with self._cond:
            if self._closed:
                raise ServingError(Code.UNAVAILABLE, "Batcher is shut down")
            queue = self._queues.get(full_key)
            if queue is None:
                queue = self._queues[full_key] = _Queue(full_key, params, run)
            if not queue.open or queue.rows + n > limit:  # the task needs a new batch
                if queue.waiting + (1 if queue.open else 0) >= params.max_enqueued_batches:
                    raise ServingError(Code.UNAVAILABLE, QUEUE_FULL_MESSAGE)
                if queue.open:
                    self._close(queue)
                queue.run = run
                queue.deadline = time.monotonic() + params.batch_timeout_micros / 1e6
                self._cond.notify_all()  # a new deadline: idle threads wait for the earliest one
            queue.open.append(task)
            queue.rows += n
            if queue.rows >= limit:
                self._close(queue)
        return future

    def _close(self, queue: _Queue, wake: bool = True) -> None:
        """Closes the open batch of `queue`; it waits for a free batch thread, one of which is
        woken unless `wake` is False (the caller is a free batch thread) (lock held)."""
        self._ready.append((queue, queue.open, queue.run))
        queue.open, queue.rows = [], 0
        queue.waiting += 1
        if wake:
            self._cond.notify()

    def _next_batch(self) -> tuple[_Queue, list[_Task], Run] | None:
        """The batch a free thread runs next, waiting until there is one; None once closed and
        drained (lock held)."""
        while True:
            if not self._ready:
                now = time.monotonic()
                open_queues = [q for q in self._queues.values() if q.open]
                due = min(open_queues, key=lambda q: q.deadline, default=None)
                if due is not None and (due.deadline <= now or self._closed):
                    self._close(due, wake=False)
                elif self._closed:
                    return None
                else:
                    self._cond.wait(max(0.0, due.deadline - now) if due is not None else None)
                    continue
            queue, tasks, run = self._ready.popleft()
            queue.waiting -= 1
            if not queue.open and not queue.waiting:  # idle: drop it (and its servable reference)
                self._queues.pop(queue.key, None)
            return queue, tasks, run

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            queue, tasks, run = batch
            _run_batch(tasks, run, queue.params)

    def close(self) -> None:
        """Runs what is queued, then stops the batch threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


def _pieces(
    inputs: Mapping[str, np.ndarray], params: BatchingParameters
) -> list[tuple[Mapping[str, np.ndarray], int]] | None:
    """The request as (inputs, rows) pieces of at most the execution batch size (one piece unless
    large batch splitting applies); None when it cannot be batched (scalars, unequal rows)."""
    rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
    if len(rows) != 1 or -1 in rows or not inputs:
        return None
    (n,) = rows
    if n > params.max_batch_size:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Task size {n} is larger than maximum input batch size " f"{params.max_batch_size}",
        )
    limit = params.execution_batch_size
    if n <= limit:
        return [(inputs, n)]
    return [({k: a[i : i + limit] for k, a in inputs.items()}, min(limit, n - i)) for i in range(0, n, limit)]


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The outputs of a split request's pieces, joined back in order."""
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


async def _concatenate_later(gathered: Awaitable[list[dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    return _concatenate(await gathered)


def _resolve(outcomes: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    """On a loop: hands each awaiting request its outcome (one it gave up on is skipped)."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _deliver(tasks: list[_Task], outcome: Callable[[_Task], Any]) -> None:
    """Gives every task of a finished batch its result or exception: blocking waiters at once,
    asyncio waiters through one call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for t in tasks:
        try:
            result, error = outcome(t), None
        except BaseException as e:  # noqa: BLE001 - the waiter re-raises it
            result, error = None, e
        if t.loop is None:
            if error is None:
                t.future.set_result(result)
            else:
                t.future.set_exception(error)
        else:
            by_loop.setdefault(t.loop, []).append((t.future, result, error))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, outcomes)


def _run_batch(tasks: list[_Task], run: Run, params: BatchingParameters) -> None:
    """Runs one batch (padded as configured) and hands each task its rows of the outputs."""
    total = sum(t.rows for t in tasks)
    padded_rows = round_to_allowed(params.allowed_batch_sizes, total)
    if len(tasks) == 1 and padded_rows == total:
        _deliver(tasks, lambda t: run(t.inputs))
        return
    try:
        merged = {}
        for name in tasks[0].inputs:
            parts = [t.inputs[name] for t in tasks]
            if params.pad_variable_length_inputs:
                shape = tuple(int(d) for d in np.max([p.shape[1:] for p in parts], axis=0)) if parts[0].ndim > 1 else ()
                parts = [pad_to(p, shape) for p in parts]
            if padded_rows > total:
                parts.append(np.repeat(parts[-1][:1], padded_rows - total, axis=0))
            merged[name] = np.concatenate(parts)
        outputs = run(merged)
    except Exception:  # noqa: BLE001 - one bad request must not fail the others
        outputs = None
    if outputs is None or any(o.ndim == 0 or o.shape[0] != padded_rows for o in outputs.values()):
        # Failed, or outputs without a batch dimension: each alone, unpadded.
        _deliver(tasks, lambda t: run(t.inputs))
        return
    offsets = dict(zip(map(id, tasks), itertools.accumulate((t.rows for t in tasks), initial=0)))
    _deliver(tasks, lambda t: {k: o[offsets[id(t)] : offsets[id(t)] + t.rows] for k, o in outputs.items()})
