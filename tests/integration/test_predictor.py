"""petr4-serve as a real process over a real socket, against a real MLflow server."""

from __future__ import annotations

import math
import re
import tempfile
import threading
import urllib.request
from datetime import date

import grpc
import mlflow
import pandas as pd
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from scripts.harness.faults import TcpProxy
from scripts.harness.processes import PredictorProcess, run_cli, wait_until
from services.client.client import ForecastClient, bars_from_frame
from services.core.calendar import next_trading_day
from services.core.forecaster import ForecastModel
from services.core.price_rules import Bars
from services.ingestion.sources import SyntheticSource
from tests.helpers import ingest_csv
from trainer.registry import RECORD

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def onnx_model(served_model):
    """The champion's artifacts, loaded independently of the server."""
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            f"models:/{served_model.name}@champion", dst_path=folder
        )
        yield ForecastModel(local).for_ticker(served_model.ticker)


@pytest.fixture(scope="module")
def shipped(served_model) -> pd.DataFrame:
    """The champion run's recorded test forecasts of its shipped model (the last fold's)."""
    version = mlflow.MlflowClient().get_model_version_by_alias(served_model.name, "champion")
    with tempfile.TemporaryDirectory() as folder:
        record = pd.read_csv(
            mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=RECORD, dst_path=folder
            )
        )
    return record[record["fold"] == record["fold"].max()]


def predictor_on_snapshot(served_model, experiment: str, prices, folder, *args) -> PredictorProcess:
    """A predictor (not started) of the served model whose snapshot is ``prices``, ingested
    into ``experiment`` (one of the test's own)."""
    ingest_csv(served_model.ticker, experiment, prices, folder / "snapshot.csv", served_model.env)
    return PredictorProcess(
        folder,
        served_model.env,
        *("--tickers", served_model.ticker, "--prices-experiment", experiment),
        *args,
    )


@pytest.fixture
def client(predictor):
    with ForecastClient(predictor.target) as client:
        yield client


def test_forecast_from_latest_prices_equals_the_onnx_model(client, served_model, onnx_model):
    response = client.forecast(served_model.ticker)
    expected = onnx_model.forecast(served_model.prices)  # every window of the whole frame
    assert response.last_date == "2023-12-28"  # 29 Dec 2023 was B3's last-weekday holiday
    assert response.target_date == next_trading_day(pd.Timestamp("2023-12-28").date()).isoformat()
    assert response.last_close == pytest.approx(served_model.prices["Close"].iloc[-1])
    assert response.predicted_close == pytest.approx(expected.median[-1], rel=1e-6)
    assert response.interval.lower == pytest.approx(expected.prices[-1, 0], rel=1e-6)
    assert response.interval.upper == pytest.approx(expected.prices[-1, -1], rel=1e-6)
    assert response.interval.level == pytest.approx(0.8)
    assert response.change_pct == pytest.approx(
        100 * (response.predicted_close / response.last_close - 1)
    )
    assert response.model.name == served_model.name and response.model.version == "1"


def test_forecast_from_explicit_history_equals_the_onnx_model(client, served_model, onnx_model):
    history = served_model.prices.iloc[-300:-100]
    response = client.forecast(served_model.ticker, bars_from_frame(history))
    expected = onnx_model.forecast(history)
    assert response.last_date == history.index[-1].strftime("%Y-%m-%d")
    assert response.predicted_close == pytest.approx(expected.median[-1], rel=1e-6)
    assert response.interval.upper == pytest.approx(expected.prices[-1, -1], rel=1e-6)
    assert not response.synthetic_data  # the request's bars are the caller's, whatever they are


def test_every_served_interval_is_the_walk_forwards_of_its_day(
    client, served_model, onnx_model, shipped
):
    """The interval's widening adapts to each close after validation, and the predictor replays
    it from its snapshot: a forecast from the bars up to any day of the shipped model's test
    block is the one the run recorded for that day."""
    assert onnx_model.calibration.adapts
    assert shipped["anchor_date"].iloc[0] == onnx_model.calibration.since
    prices = served_model.prices
    for day in shipped.itertuples():
        history = prices.loc[: day.anchor_date].iloc[-200:]
        response = client.forecast(served_model.ticker, bars_from_frame(history))
        assert response.last_date == day.anchor_date
        assert response.interval.lower == pytest.approx(day.forecast_q10, rel=1e-6)
        assert response.interval.upper == pytest.approx(day.forecast_q90, rel=1e-6)
    # The widening moved: the shipped model's last test day is not served with its fitted one.
    history = prices.loc[: shipped["anchor_date"].iloc[-1]]
    fitted = onnx_model.forecast_next(Bars.from_frame(history))
    assert fitted[0] != pytest.approx(shipped["forecast_q10"].iloc[-1], rel=1e-6)


def test_requests_past_an_older_snapshot_replay_their_own_closes(
    served_model, onnx_model, shipped, tmp_path
):
    """A predictor whose snapshot stops a month into the shipped model's test block: the 200
    bars a user sends for each later day move the widening as a current snapshot would, so
    every interval is still the one the run recorded for that day."""
    prices = served_model.prices
    cut = shipped["anchor_date"].iloc[20]
    older = prices.loc[:cut]
    experiment = f"{served_model.prices_experiment}-older"  # its own snapshots
    process = predictor_on_snapshot(served_model, experiment, older, tmp_path)
    frozen_path = onnx_model.widening_path(older)
    moved = 0
    try:
        process.start().wait_serving()
        with ForecastClient(process.target) as client:
            assert client.forecast(served_model.ticker).last_date == cut
            for day in shipped[shipped["anchor_date"] > cut].itertuples():
                history = prices.loc[: day.anchor_date].iloc[-200:]
                response = client.forecast(served_model.ticker, bars_from_frame(history))
                assert response.interval.lower == pytest.approx(day.forecast_q10, rel=1e-6)
                assert response.interval.upper == pytest.approx(day.forecast_q90, rel=1e-6)
                frozen = onnx_model.forecast_next(
                    Bars.from_frame(history), onnx_model.widen_on(frozen_path, day.anchor_date)
                )
                moved += frozen[0] != pytest.approx(day.forecast_q10, rel=1e-6)
    finally:
        process.stop()
    assert moved > 10  # the closes after the snapshot did move the widening


def test_model_info_describes_the_served_version(client, served_model):
    (info,) = client.model_info(served_model.ticker).models
    assert info.uri == f"models:/{served_model.name}@champion"
    assert info.model.version == "1" and info.window == 20 and info.min_history_bars == 80
    assert info.data_last_date == "2023-12-28" and info.prices_last_date == "2023-12-28"
    assert list(info.quantiles) == [0.1, 0.5, 0.9]
    # Three folds of 60 test days are the last 180 target days: naive's MAE is their mean
    # |close change|.
    naive_mae = served_model.prices["Close"].diff().abs().iloc[-180:].mean()
    assert info.naive_metrics["mae_brl"] == pytest.approx(naive_mae)
    assert info.test_metrics["mae_ratio_naive"] == pytest.approx(
        info.test_metrics["mae_brl"] / naive_mae
    )
    assert len(client.model_info().models) == 1  # empty ticker: every served model


def expect_error(call, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code
    assert message in caught.value.details()


def with_bar(bars, number: int, **fields):
    """The bars with bar ``number`` (from 0) changed."""
    for name, value in fields.items():
        setattr(bars[number], name, value)
    return bars


# Each bad request: the ticker and bars it sends (given the served ticker and 100 good bars),
# and the status code and the words of the answer.
BAD_REQUESTS = {
    "empty ticker": (lambda t, b: ("", None), "INVALID_ARGUMENT", "ticker is required"),
    "lower-case ticker": (
        lambda t, b: (t.lower(), None),
        "INVALID_ARGUMENT",
        "is not spelled as Yahoo spells it",
    ),
    "unknown ticker": (
        lambda t, b: ("NOPE3.SA", None),
        "NOT_FOUND",
        "no model serves ticker 'NOPE3.SA'; this server serves ",
    ),
    "too short": (
        lambda t, b: (t, b[:79]),
        "INVALID_ARGUMENT",
        "history has 79 usable bars; the model needs at least 80 (a window of 20 plus 60 of warm-up)",
    ),
    "malformed date": (
        lambda t, b: (t, with_bar(b, 5, date="2023-13-01")),
        "INVALID_ARGUMENT",
        "history bar 6 has date '2023-13-01'; expected YYYY-MM-DD",
    ),
    "repeated date": (
        lambda t, b: (t, with_bar(b, 10, date=b[9].date)),
        "INVALID_ARGUMENT",
        "history dates must strictly increase: 2023-08-17 follows 2023-08-17",
    ),
    "NaN close": (
        lambda t, b: (t, with_bar(b, 30, close=math.nan)),
        "INVALID_ARGUMENT",
        "history: NaN or infinite values on 2023-09-18",
    ),
    "infinite high": (
        lambda t, b: (t, with_bar(b, 30, high=math.inf)),
        "INVALID_ARGUMENT",
        "history: NaN or infinite values on 2023-09-18",
    ),
    "negative low": (
        lambda t, b: (t, with_bar(b, 30, low=-1.0)),
        "INVALID_ARGUMENT",
        "history: zero or negative prices on 2023-09-18",
    ),
    "zero open": (
        lambda t, b: (t, with_bar(b, 30, open=0.0)),
        "INVALID_ARGUMENT",
        "history: zero or negative prices on 2023-09-18",
    ),
    "high below the body": (
        lambda t, b: (t, with_bar(b, 30, high=1.0)),
        "INVALID_ARGUMENT",
        "history: High below max(Open, Close) on 2023-09-18",
    ),
}


def send(client, served_model, case: str):
    ticker, history = BAD_REQUESTS[case][0](
        served_model.ticker, bars_from_frame(served_model.prices.iloc[-100:])
    )
    return lambda: client.forecast(ticker, history)


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_request_gets_its_code_and_message(client, served_model, case):
    _, code, message = BAD_REQUESTS[case]
    expect_error(send(client, served_model, case), grpc.StatusCode[code], message)


def test_too_long_history(client, served_model):
    many = bars_from_frame(served_model.prices.iloc[-401:])
    expect_error(
        lambda: client.forecast(served_model.ticker, many),
        grpc.StatusCode.INVALID_ARGUMENT,
        "history has 401 bars; at most 400 are accepted",
    )


def test_model_info_of_an_unknown_ticker_is_not_found(client):
    expect_error(
        lambda: client.model_info("NOPE3.SA"), grpc.StatusCode.NOT_FOUND, "no model serves"
    )


def test_the_server_survives_every_bad_request_in_a_row(served_model, tmp_path):
    """A predictor of its own, so that no other test's requests count: every bad request,
    one after the other, then it still answers SERVING and forecasts."""
    process = PredictorProcess(tmp_path, served_model.env, *served_model.serve_args()).start()
    try:
        process.wait_serving()
        with ForecastClient(process.target) as client:
            for case in BAD_REQUESTS:
                with pytest.raises(grpc.RpcError):
                    send(client, served_model, case)()
            assert client.health() == "SERVING"
            assert client.forecast(served_model.ticker).predicted_close > 0
        assert process.process.poll() is None
    finally:
        process.stop()


def test_reflection_lists_the_services(predictor):
    with grpc.insecure_channel(predictor.target) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "petr4.forecast.v1.ForecastService" in services
    assert "grpc.health.v1.Health" in services


def test_metrics_count_rpcs_by_method_and_code(client, predictor, served_model):
    client.forecast(served_model.ticker)
    with pytest.raises(grpc.RpcError):
        client.forecast("NOPE3.SA")
    text = urllib.request.urlopen(predictor.metrics_url).read().decode()
    assert re.search(r'petr4_grpc_requests_total\{code="OK",method="Forecast"\} [1-9]', text)
    assert re.search(r'petr4_grpc_requests_total\{code="NOT_FOUND",method="Forecast"\} [1-9]', text)
    assert 'petr4_grpc_request_duration_seconds_bucket{le="0.005",method="Forecast"}' in text
    assert f'petr4_model_info{{model_name="{served_model.name}",model_version="1"' in text
    assert f'petr4_model_ready{{ticker="{served_model.ticker}"}} 1.0' in text
    assert f'petr4_price_data_age_days{{ticker="{served_model.ticker}"}}' in text


def test_newer_snapshot_is_picked_up_and_scores_earlier_forecasts(served_model, tmp_path):
    """A refresh brings new closes; the forecasts for those days become realized errors."""
    experiment = f"{served_model.prices_experiment}-refresh"  # its own snapshots
    process = predictor_on_snapshot(
        served_model, experiment, served_model.prices, tmp_path, "--refresh-seconds", "0.5"
    )
    try:
        process.start().wait_serving()
        with ForecastClient(process.target) as client:
            assert client.forecast(served_model.ticker).last_date == "2023-12-28"
            longer = SyntheticSource(
                seed=21, first_date=date(2021, 1, 4), end=date(2024, 1, 10)
            ).fetch("S.SA", None)
            ingest_csv(
                served_model.ticker, experiment, longer, tmp_path / "b.csv", served_model.env
            )
            wait_until(
                lambda: client.forecast(served_model.ticker).last_date == "2024-01-10",
                30,
                "the refresh",
            )
        text = urllib.request.urlopen(process.metrics_url).read().decode()
        days = re.search(
            rf'petr4_realized_days\{{ticker="{re.escape(served_model.ticker)}"\}} (\S+)', text
        )
        assert (
            days and float(days.group(1)) == 7
        )  # 28 Dec and six January days now have their next close
        assert re.search(r"petr4_realized_mae_brl\{[^}]*\} [0-9.]+", text)
        assert re.search(r"petr4_realized_naive_mae_brl\{[^}]*\} [0-9.]+", text)
    finally:
        process.stop()


def test_health_flips_at_start_and_at_sigterm(served_model, mlflow_server, tmp_path):
    proxy = TcpProxy(mlflow_server.port, blocked=True)  # MLflow unreachable at first
    process = PredictorProcess(
        tmp_path, {"MLFLOW_TRACKING_URI": proxy.uri}, *served_model.serve_args()
    )
    try:
        process.start()
        wait_until(
            lambda: process.health() == "NOT_SERVING", 30, "NOT_SERVING while MLflow is down"
        )
        proxy.blocked = False
        process.wait_serving()
        assert process.terminate() == 0
        assert "shutting down: NOT_SERVING" in process.output()
    finally:
        process.stop()
        proxy.close()


def test_mlflow_down_at_start_is_a_clean_exit(served_model, tmp_path):
    process = PredictorProcess(
        tmp_path,
        {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
        *served_model.serve_args("--startup-timeout-seconds", "4"),
    )
    try:
        process.start()
        wait_until(lambda: process.health() == "NOT_SERVING", 30, "NOT_SERVING")
        assert process.process.wait(60) == 1
        assert "models not loaded after 4 s" in process.output()
    finally:
        process.stop()


def test_sigterm_under_load_loses_no_accepted_request(served_model, tmp_path):
    process = (
        PredictorProcess(
            tmp_path, served_model.env, *served_model.serve_args("--shutdown-grace-seconds", "10")
        )
        .start()
        .wait_serving()
    )
    history = bars_from_frame(served_model.prices.iloc[-200:])
    outcomes: list[str] = []
    started = threading.Barrier(9)

    def caller():
        with ForecastClient(process.target, timeout=10) as client:
            started.wait()
            for _ in range(2000):
                try:
                    client.forecast(served_model.ticker, history)
                    outcomes.append("OK")
                except grpc.RpcError as error:
                    outcomes.append(error.code().name)
                    return

    threads = [threading.Thread(target=caller) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        started.wait()
        wait_until(lambda: len(outcomes) > 200, 60, "load to build up")
        assert process.terminate() == 0
        for thread in threads:
            thread.join(60)
        answered = re.search(r"stopped: (\d+) RPCs answered, (\d+) in flight", process.output())
        assert answered, process.output()[-2000:]
        assert int(answered.group(2)) == 0
        assert outcomes.count("OK") == int(answered.group(1))  # every accepted RPC got its answer
        # The rest were refused at the door once shutdown began: UNAVAILABLE when the port
        # was closed, CANCELLED when they reached the server before any handler took them.
        assert set(outcomes) - {"OK"} <= {"UNAVAILABLE", "CANCELLED"}
    finally:
        process.stop()


def test_cli_prints_a_table_and_json(predictor, served_model):
    table = run_cli(
        ["petr4-forecast", "--target", predictor.target, "--ticker", served_model.ticker], {}
    )
    assert table.returncode == 0, table.stderr
    assert "80% interval" in table.stdout and f"{served_model.name} v1" in table.stdout
    as_json = run_cli(
        [
            "petr4-forecast",
            "--target",
            predictor.target,
            "--ticker",
            served_model.ticker,
            "--history-csv",
            str(served_model.csv),
            "--json",
        ],
        {},
    )
    assert as_json.returncode == 0, as_json.stderr
    assert '"predicted_close"' in as_json.stdout and '"last_date": "2023-12-28"' in as_json.stdout
    info = run_cli(["petr4-forecast", "info", "--target", predictor.target], {})
    assert info.returncode == 0 and "test MAE" in info.stdout
    health = run_cli(["petr4-forecast", "health", "--target", predictor.target], {})
    assert health.returncode == 0 and health.stdout.strip() == f"{predictor.target}: SERVING"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--ticker", "NOPE3.SA"], 3, "NOT_FOUND: no model serves ticker 'NOPE3.SA'"),
        (["--history-csv", "/nonexistent.csv"], 2, "price file /nonexistent.csv: no such file"),
        (
            ["--history-bars", "10", "--history-csv", "CSV"],
            2,
            "INVALID_ARGUMENT: history has 10 usable bars",
        ),
    ],
)
def test_cli_errors_have_exit_codes(predictor, served_model, args, code, message):
    args = [str(served_model.csv) if a == "CSV" else a for a in args]
    if "--ticker" not in args:
        args += ["--ticker", served_model.ticker]
    result = run_cli(["petr4-forecast", "--target", predictor.target, *args], {})
    assert result.returncode == code
    assert message in result.stderr


def test_cli_unreachable_server():
    result = run_cli(["petr4-forecast", "--target", "127.0.0.1:9", "--timeout", "2"], {})
    assert result.returncode == 4
    assert (
        "UNAVAILABLE" in result.stderr and "is petr4-serve running at 127.0.0.1:9" in result.stderr
    )
