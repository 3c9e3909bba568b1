"""Unit tests of serving/limits.py: flag values, deadlines, the in-flight cap, log rate limit."""

from __future__ import annotations

import logging
import time

import pytest

from serving.limits import GRPC_CHANNEL_DEFAULTS, Deadline, InFlightLimiter, Limits, RateLimitFilter, grpc_arguments
from serving.options import parse_args
from serving.status import Code, ServingError


def test_every_limit_is_a_flag_with_its_default():
    assert parse_args([], "/m").limits == Limits()
    options = parse_args(["--max_request_elements=7", "--rest_api_max_connections=3"], "/m")
    assert options.limits.max_request_elements == 7 and options.limits.rest_api_max_connections == 3


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="--max_in_flight_requests_per_model must be positive"):
        Limits(max_in_flight_requests_per_model=0)


def test_grpc_channel_arguments_override_the_defaults():
    arguments = grpc_arguments("grpc.max_connection_age_ms=5000, grpc.some_name=text")
    assert arguments["grpc.max_connection_age_ms"] == 5000 and arguments["grpc.some_name"] == "text"
    assert arguments["grpc.keepalive_time_ms"] == GRPC_CHANNEL_DEFAULTS["grpc.keepalive_time_ms"]
    with pytest.raises(ValueError, match="expected key=value"):
        grpc_arguments("grpc.keepalive_time_ms")


def test_deadline_expires_cancels_and_follows_the_client():
    Deadline().check()
    Deadline(60).check()
    expired = Deadline(0.0)
    time.sleep(0.001)
    with pytest.raises(ServingError) as raised:
        expired.check()
    assert raised.value.code == Code.DEADLINE_EXCEEDED
    cancelled = Deadline(60)
    cancelled.cancel()
    with pytest.raises(ServingError):
        cancelled.check()
    with pytest.raises(ServingError) as raised:
        Deadline(60, is_active=lambda: False).check()
    assert raised.value.code == Code.CANCELLED


def test_in_flight_limiter_refuses_past_the_limit_per_model():
    limiter = InFlightLimiter(2)
    with limiter.slot("a"), limiter.slot("a"), limiter.slot("b"):
        with pytest.raises(ServingError) as raised, limiter.slot("a"):
            pass
        assert raised.value.code == Code.UNAVAILABLE
    with limiter.slot("a"), limiter.slot("a"):  # the slots came back
        pass


def test_rate_limit_filter_lets_one_record_through_and_counts_the_rest():
    log_filter = RateLimitFilter(interval=3600)
    records = [logging.LogRecord("x", logging.WARNING, "", 0, "refused %d", (i,), None) for i in range(1000)]
    passed = [r for r in records if log_filter.filter(r)]
    assert len(passed) == 1
    other = logging.LogRecord("x", logging.WARNING, "", 0, "another message", (), None)
    assert log_filter.filter(other)
