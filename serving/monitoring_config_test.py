"""Tests of serving.monitoring_config: TF Serving's MonitoringConfig text proto -> metrics path."""

from __future__ import annotations

import pytest

from serving.monitoring_config import DEFAULT_PROMETHEUS_PATH, prometheus_path
from tests.serving_conftest_helpers import FIXTURES


def test_tf_servings_monitoring_config_enables_its_path():
    assert prometheus_path((FIXTURES / "monitoring_config.txt").read_text()) == "/monitoring/prometheus/metrics"


@pytest.mark.parametrize(
    "text, path",
    [
        ("", None),
        ("prometheus_config { enable: false path: '/m' }", None),
        ("prometheus_config { enable: true }", DEFAULT_PROMETHEUS_PATH),
        ("prometheus_config: { enable: true, path: '/metrics' }", "/metrics"),
    ],
)
def test_prometheus_path(text, path):
    assert prometheus_path(text) == path


@pytest.mark.parametrize(
    "text, wording",
    [
        ("prometheus_config { enable: maybe }", "Error parsing text-format tensorflow.serving.MonitoringConfig"),
        ("grafana {}", 'has no field named "grafana"'),
        ("prometheus_config { enable: true path: 'metrics' }", "must start with '/'"),
    ],
)
def test_bad_monitoring_config(text, wording):
    with pytest.raises(ValueError, match=wording):
        prometheus_path(text)
