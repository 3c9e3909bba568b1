"""Caps and timeouts that bound what one client can cost the server, defined once.

Each field is a `mnist-tfx serve` flag of the same name (see `add_flags`), and a row of the
"Limits" table in serving/README.md. This module imports no TensorFlow (flag parsing must
stay fast), so the checks that need TensorFlow's protos live in serving/request_checks.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Iterator

from serving.status import Code, ServingError, clip

MIB = 1024 * 1024


def _field(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request caps, per-model concurrency and connection timeouts."""

    max_request_bytes: int = _field(64 * MIB, "largest REST body or gRPC message, in bytes (REST: 413 beyond it)")
    max_request_elements: int = _field(
        2**22,
        "most tensor elements in one request (gRPC: declared shapes of all inputs; REST: "
        "JSON values in the body, counted before parsing)",
    )
    max_in_flight_requests_per_model: int = _field(
        32,
        "predict/classify/regress requests running or queued per model; more are answered "
        "at once with 503 / UNAVAILABLE",
    )
    rest_api_header_timeout_in_ms: int = _field(
        10_000, "time for a client to send a request's headers; the connection is closed after it"
    )
    rest_api_body_timeout_in_ms: int = _field(
        60_000, "time for a client to send a request's body (408 and close after it)"
    )
    rest_api_idle_timeout_in_ms: int = _field(60_000, "how long an idle keep-alive connection stays open")
    rest_api_max_connections: int = _field(
        512, "open REST connections; past it a new one gets 503 and is closed, the open ones " "finish normally"
    )
    grpc_channel_arguments: str = _field(
        "",
        "comma-separated gRPC server arguments (key=value) overriding the defaults of "
        "GRPC_CHANNEL_DEFAULTS, e.g. grpc.max_connection_age_ms=60000",
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int) and value <= 0:
                raise ValueError(f"--{field.name} must be positive, got {value}")
        grpc_arguments(self.grpc_channel_arguments)  # fails at start-up, not at listen time

    @property
    def header_timeout(self) -> float:
        return self.rest_api_header_timeout_in_ms / 1000

    @property
    def body_timeout(self) -> float:
        return self.rest_api_body_timeout_in_ms / 1000

    @property
    def idle_timeout(self) -> float:
        return self.rest_api_idle_timeout_in_ms / 1000


# gRPC keep-alive and connection lifetime: dead peers are found within ~80 s, idle connections
# close after 5 min, and every connection is recycled hourly (30 s grace for calls in flight).
GRPC_CHANNEL_DEFAULTS: dict[str, int] = {
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.max_connection_idle_ms": 300_000,
    "grpc.max_connection_age_ms": 3_600_000,
    "grpc.max_connection_age_grace_ms": 30_000,
}


def grpc_arguments(text: str) -> dict[str, int | str]:
    """GRPC_CHANNEL_DEFAULTS updated by `--grpc_channel_arguments` ("k=v,k=v"; ints stay ints)."""
    arguments: dict[str, int | str] = dict(GRPC_CHANNEL_DEFAULTS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {clip(item)!r}")
        value = value.strip()
        number = int(value) if value.lstrip("-").isdigit() else None  # int32 values as ints, as TF Serving
        arguments[key.strip()] = number if number is not None and -(2**31) <= number < 2**31 else value
    return arguments


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _grpc_arguments_text(text: str) -> str:
    try:
        grpc_arguments(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Limits field, same name, same default."""
    for field in dataclasses.fields(Limits):
        parser.add_argument(
            f"--{field.name}",
            type=positive_int if field.type == "int" else _grpc_arguments_text,
            default=field.default,
            help=f"{field.metadata['help']} (default {field.default!r})",
        )


def from_args(args: argparse.Namespace) -> Limits:
    return Limits(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Limits)})


class Deadline:
    """When a request must stop. Checked between steps (parse, convert, run, write), so a
    request that timed out or whose client went away stops its work at the next step."""

    def __init__(
        self,
        seconds: float | None = None,
        is_active: Callable[[], bool] | None = None,
        message: str = "Deadline Exceeded",
    ) -> None:
        self._end = time.monotonic() + seconds if seconds is not None else None
        self._is_active = is_active
        self._cancelled = threading.Event()
        self.message = message

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        """Raises DEADLINE_EXCEEDED (or CANCELLED) when the request must not go on."""
        if self._cancelled.is_set() or (self._end is not None and time.monotonic() > self._end):
            raise ServingError(Code.DEADLINE_EXCEEDED, self.message)
        if self._is_active is not None and not self._is_active():
            raise ServingError(Code.CANCELLED, "Request cancelled by the client")


def check_deadline(deadline: Deadline | None) -> None:
    if deadline is not None:
        deadline.check()


class InFlightLimiter:
    """At most `limit` requests per model at once; the next one is refused, not queued."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._counts: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Requests in flight over all models (1: the caller's own is the only one)."""
        return self._total

    def acquire(self, model: str) -> None:
        """Takes a slot of `model`, or raises UNAVAILABLE when all are taken."""
        with self._lock:
            count = self._counts.get(model, 0)
            if count >= self._limit:
                raise ServingError(
                    Code.UNAVAILABLE,
                    f"Too many requests in flight for model {clip(model)}: limit "
                    f"{self._limit} (--max_in_flight_requests_per_model); retry later",
                )
            self._counts[model] = count + 1
            self._total += 1

    def release(self, model: str) -> None:
        with self._lock:
            self._counts[model] -= 1
            self._total -= 1
            if not self._counts[model]:
                del self._counts[model]

    @contextlib.contextmanager
    def slot(self, model: str) -> Iterator[None]:
        """A slot of `model` for the duration of the block."""
        self.acquire(model)
        try:
            yield
        finally:
            self.release(model)


class RateLimitFilter(logging.Filter):
    """Lets one record per logger and message template through per `interval` seconds and
    says how many were dropped in between, so an abusive client cannot flood the log."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[tuple[str, Any], float] = {}
        self._dropped: dict[tuple[str, Any], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self._interval) < self._interval:
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return False
            self._last[key] = now
            dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it in the last {self._interval:g} s)"
        return True


def configure_rate_limited_logging(fmt: str, interval: float = 10.0) -> None:
    """`logging.basicConfig(level=INFO, format=fmt)` with a RateLimitFilter on the handler it adds,
    so an abusive client cannot flood the log. A process that already configured logging (an
    embedding application, a test runner) keeps its own handlers, untouched."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RateLimitFilter(interval))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
