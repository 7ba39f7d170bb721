"""A real Prometheus scrapes the predictor's metrics port."""

from __future__ import annotations

import pytest

from scripts.harness.monitoring import PrometheusServer
from scripts.harness.processes import wait_until
from services.client.client import ForecastClient
from tests.helpers import server_or_skip

pytestmark = pytest.mark.integration


def test_prometheus_scrapes_the_rpc_counter(predictor, served_model, tmp_path):
    with ForecastClient(predictor.target) as client:
        for _ in range(5):
            client.forecast(served_model.ticker)
    prometheus = server_or_skip(
        lambda: PrometheusServer(tmp_path, [f"127.0.0.1:{predictor.metrics_port}"])
    ).start()
    try:
        expr = 'sum(petr4_grpc_requests_total{method="Forecast",code="OK"})'
        wait_until(lambda: bool(prometheus.query(expr)), 30, "the first scrape")
        (sample,) = prometheus.query(expr)
        assert float(sample["value"][1]) >= 5
        (up,) = prometheus.query('up{job="petr4-predictor"}')
        assert up["value"][1] == "1"
    finally:
        prometheus.stop()
