"""Every Grafana panel query runs and returns data, against a real Prometheus scraping a real predictor."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from datetime import date

import grpc
import pytest

from scripts.harness.monitoring import PrometheusServer
from scripts.harness.processes import PredictorProcess, wait_until
from services.client.client import ForecastClient, bars_from_frame
from services.ingestion.sources import SyntheticSource
from tests.helpers import REPO, ingest_csv, server_or_skip

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "charts" / "petr4" / "dashboards" / "petr4.json"
# What Grafana puts in for its variables when "All" is chosen, and a rate window that
# spans a few of this test's one-second scrapes.
VARIABLES = {"$namespace": ".*", "$ticker": ".*", "$__rate_interval": "15s"}


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@pytest.fixture(scope="module")
def scraped(served_model, tmp_path_factory):
    """A predictor whose prices run past its model's training data, under load, being scraped."""
    root = tmp_path_factory.mktemp("dashboard")
    experiment = f"{served_model.prices_experiment}-dashboard"
    longer = SyntheticSource(seed=21, first_date=date(2021, 1, 4), end=date(2024, 1, 19)).fetch(
        "S.SA", None
    )
    ingest_csv(served_model.ticker, experiment, longer, root / "prices.csv", served_model.env)
    predictor = PredictorProcess(
        root, served_model.env, "--tickers", served_model.ticker, "--prices-experiment", experiment
    )
    prometheus = server_or_skip(
        lambda: PrometheusServer(root, [f"127.0.0.1:{predictor.metrics_port}"])
    )
    with contextlib.ExitStack() as running:  # whatever started is stopped, however this ends
        running.callback(predictor.stop)
        predictor.start().wait_serving()
        running.callback(prometheus.stop)
        prometheus.start()
        with ForecastClient(predictor.target) as client:
            history = bars_from_frame(longer.iloc[-100:])
            deadline = time.monotonic() + 20  # traffic across several scrapes, so rates exist
            while time.monotonic() < deadline:
                client.forecast(served_model.ticker)
                client.forecast(served_model.ticker, history)
                with contextlib.suppress(grpc.RpcError):  # a NOT_FOUND, for the error panels
                    client.forecast("NOPE3.SA")
                time.sleep(0.05)
        wait_until(
            lambda: bool(prometheus.query("petr4_realized_mae_brl")),
            30,
            "the realized MAE to be scraped",
        )
        yield prometheus, served_model.ticker


def test_the_dashboard_has_every_panel_it_promises():
    titles = {title for title, _ in panel_queries()}
    assert titles == {
        "Requests per second",
        "Error ratio (server side)",
        "Forecast latency",
        "Served model version",
        "Price data age",
        "Models ready",
        "Forecast against actual close (R$)",
        "Rolling realized MAE against naive (R$)",
        "Live interval coverage (80 % aimed for)",
        "Live interval score against the classic interval (R$)",
        "Interval widening (units of the day's volatility)",
    }


@pytest.mark.parametrize(
    ("title", "expr"), panel_queries(), ids=[f"{t}:{i}" for i, (t, _) in enumerate(panel_queries())]
)
def test_panel_query_returns_data(scraped, title, expr):
    prometheus, _ = scraped
    result = prometheus.query(substitute(expr))
    assert result, f"{title}: {substitute(expr)} returned no series"
    for series in result:
        value = float(series["value"][1])
        assert value == value, f"{title}: NaN in {series}"  # a rate over too few samples gives NaN


def test_ticker_variable_lists_the_served_ticker(scraped):
    prometheus, ticker = scraped
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "ticker"]
    query = variable["query"]["query"]  # label_values(<selector>, ticker), a Grafana function
    selector = substitute(query[len("label_values(") : query.rindex(",")])
    url = f"{prometheus.url}/api/v1/series?{urllib.parse.urlencode({'match[]': selector})}"
    with urllib.request.urlopen(url) as response:
        series = json.load(response)["data"]
    assert ticker in {s["ticker"] for s in series}
