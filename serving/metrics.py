"""Prometheus metrics (request counts and latency per model, version, API and protocol),
exported at /monitoring/prometheus/metrics like TF Serving's monitoring endpoint."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

METRICS_PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = CONTENT_TYPE_LATEST
_LABELS = ("model_name", "model_version", "api", "entrypoint")
# TF Serving's model_warmup_latency sampler: microseconds, Buckets::Exponential(10, 1.8, 33).
_WARMUP_BUCKETS_MICROS = tuple(10 * 1.8**i for i in range(33))
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestOutcome:
    """Filled in by the handler while the request runs: the version served and the status.
    As a context manager (`Metrics.track`) it counts the request and observes its latency
    when the block ends."""

    __slots__ = ("version", "status", "_metrics", "_labels", "_start")

    def __init__(self, metrics: Metrics | None = None, labels: tuple[str, str, str] = ("", "", "")) -> None:
        self.version = ""
        self.status = "OK"
        self._metrics = metrics
        self._labels = labels
        self._start = 0.0

    def __enter__(self) -> RequestOutcome:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._metrics is not None:
            self._metrics.record(self._labels, self.version, self.status, time.perf_counter() - self._start)


class Metrics:
    """The server's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_count = Counter(
            ":tensorflow:serving:request_count",
            "Requests, by model, version, API, protocol " "and status code.",
            _LABELS + ("status",),
            registry=self.registry,
        )
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Request latency in seconds.",
            _LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loaded_versions = Gauge(
            ":tensorflow:serving:loaded_model_versions",
            "Versions currently serving, by model.",
            ("model_name",),
            registry=self.registry,
        )
        self.warmup_latency = Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) " "for warming up the model.",
            ("model_path", "status"),
            buckets=_WARMUP_BUCKETS_MICROS,
            registry=self.registry,
        )
        self.warmup_records = Counter(
            ":tensorflow:serving:model_warmup_records",
            "Warmup records replayed (each run "
            "--num_request_iterations_for_warmup times), by model path and status.",
            ("model_path", "status"),
            registry=self.registry,
        )
        self._series: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def track(self, model_name: str, api: str, entrypoint: str) -> RequestOutcome:
        """A context manager that counts one request and observes its latency when it ends."""
        return RequestOutcome(self, (model_name, api, entrypoint))

    def record(self, labels: tuple[str, str, str], version: str, status: str, seconds: float) -> None:
        """One finished request. The labelled series are looked up once per label set (the
        sets are few: configured model names, loaded versions, APIs, status codes)."""
        key = (*labels, version, status)
        series = self._series.get(key)
        if series is None:
            model_name, api, entrypoint = labels
            names = (model_name, version, api, entrypoint)
            series = self._series[key] = (
                self.request_latency.labels(*names),
                self.request_count.labels(*names, status),
            )
        series[0].observe(seconds)
        series[1].inc()

    def observe_warmup(self, model_path: str, status: str, seconds: float, records: int) -> None:
        """One version's warmup: its wall time and how many records it replayed."""
        self.warmup_latency.labels(model_path, status).observe(seconds * 1e6)
        self.warmup_records.labels(model_path, status).inc(records)

    def set_loaded(self, versions: dict[str, list[int]]) -> None:
        for name, loaded in versions.items():
            self.loaded_versions.labels(name).set(len(loaded))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
