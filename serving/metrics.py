"""Prometheus metrics (request counts and latency per model, version, API and protocol),
exported at /monitoring/prometheus/metrics like TF Serving's monitoring endpoint."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

METRICS_PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = CONTENT_TYPE_LATEST
_LABELS = ("model_name", "model_version", "api", "entrypoint")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0, 30.0)


class RequestOutcome:
    """Filled in by the handler while the request runs: the version served and the status."""

    def __init__(self) -> None:
        self.version = ""
        self.status = "OK"


class Metrics:
    """The server's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_count = Counter(
            ":tensorflow:serving:request_count", "Requests, by model, version, API, protocol "
            "and status code.", _LABELS + ("status",), registry=self.registry)
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency", "Request latency in seconds.",
            _LABELS, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.loaded_versions = Gauge(
            ":tensorflow:serving:loaded_model_versions", "Versions currently serving, by model.",
            ("model_name",), registry=self.registry)

    @contextmanager
    def track(self, model_name: str, api: str, entrypoint: str) -> Iterator[RequestOutcome]:
        """Counts one request and observes its latency when the block ends."""
        outcome = RequestOutcome()
        start = time.perf_counter()
        try:
            yield outcome
        finally:
            labels = (model_name, outcome.version, api, entrypoint)
            self.request_latency.labels(*labels).observe(time.perf_counter() - start)
            self.request_count.labels(*labels, outcome.status).inc()

    def set_loaded(self, versions: dict[str, list[int]]) -> None:
        for name, loaded in versions.items():
            self.loaded_versions.labels(name).set(len(loaded))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
