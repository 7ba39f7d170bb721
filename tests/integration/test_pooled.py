"""A pooled training and the predictor that serves it, against a real MLflow server: one run,
a version per ticker each judged by its own gate, one model folder loaded once for every
ticker, and a ticker without a model that holds nobody up."""

from __future__ import annotations

import json
import re
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import grpc
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from scripts.harness.processes import PredictorProcess, run_cli, wait_until
from services.client.client import ForecastClient
from services.core.forecaster import ForecastModel
from services.core.naming import CHAMPION_ALIAS, registered_model_name
from services.ingestion.sources import SyntheticSource
from tests.helpers import SMALL_TRAINING, register_crafted_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Universe:
    tickers: list[str]
    prices: dict[str, pd.DataFrame]
    experiment: str  # of the snapshots
    training: str
    env: dict
    run_id: str = ""

    def serve_args(self, tickers: list[str], *extra: str) -> list[str]:
        return ["--tickers", *tickers, "--prices-experiment", self.experiment, *extra]


def synthetic(seed: int, first: date) -> pd.DataFrame:
    return SyntheticSource(seed=seed, first_date=first, end=date(2023, 12, 29)).fetch("X.SA", None)


def ingest(universe: Universe, tickers: list[str], folder: Path) -> None:
    for ticker in tickers:
        universe.prices[ticker].to_csv(folder / f"{ticker}.csv")
    done = run_cli(
        [
            *("petr4-ingest", "--tickers", *tickers, "--experiment", universe.experiment),
            *("--source", f"csv:{folder}/{{ticker}}.csv"),
        ],
        universe.env,
    )
    assert done.returncode == 0, done.stderr


def train(universe: Universe, *args: str):
    return run_cli(
        [
            *("petr4-train", *args, "--prices-experiment", universe.experiment),
            *("--experiment", universe.training, *SMALL_TRAINING),
        ],
        universe.env,
    )


def new_universe(env: dict, count: int) -> Universe:
    suffix = uuid.uuid4().hex[:5].upper()
    tickers = [f"P{n}{suffix}.SA" for n in range(count)]
    starts = [date(2020, 1, 2), date(2021, 1, 4), date(2020, 7, 1), date(2021, 1, 4)]
    prices = {t: synthetic(30 + n, starts[n]) for n, t in enumerate(tickers)}
    return Universe(tickers, prices, f"prices-{suffix}", f"training-{suffix}", env)


@pytest.fixture(scope="module")
def universe(mlflow_server, tmp_path_factory) -> Universe:
    """Three tickers trained pooled, a fourth ingested with no model yet."""
    universe = new_universe({"MLFLOW_TRACKING_URI": mlflow_server.uri}, 4)
    ingest(universe, universe.tickers, tmp_path_factory.mktemp("universe"))
    trained = train(universe, "--tickers", *universe.tickers[:3], "--champion-tolerance", "1")
    assert trained.returncode == 0, trained.stderr
    for ticker in universe.tickers[:3]:
        assert f"registered {registered_model_name(ticker)} version 1; alias 'champion' moved" in (
            trained.stdout
        )
    universe.run_id = re.search(r"MLflow run (\w+)", trained.stdout).group(1)
    return universe


def metrics_of(url: str) -> str:
    return urllib.request.urlopen(url).read().decode()


def test_a_pooled_run_is_one_run_and_one_version_per_ticker(universe):
    client = MlflowClient()
    pooled = universe.tickers[:3]
    for ticker in pooled:
        (version,) = client.search_model_versions(f"name = '{registered_model_name(ticker)}'")
        assert version.run_id == universe.run_id
        assert version.tags["trained_on"] == ",".join(pooled)
    run = client.get_run(universe.run_id)
    assert run.data.params["tickers"] == ",".join(pooled) and run.data.params["ticker_count"] == "3"
    assert len(run.inputs.dataset_inputs) == 3  # each ticker's snapshot, with its digest
    first = pooled[0]
    for key in ("test_lstm_mae_brl", "test_lstm_interval_score_brl", "test_naive_mae_brl"):
        assert np.isfinite(run.data.metrics[f"{first}/{key}"])
    assert run.data.tags[f"{first}/champion"] == "true"
    assert [
        m.step for m in client.get_metric_history(universe.run_id, f"{first}/fold_lstm_coverage")
    ] == [1, 2, 3]

    with tempfile.TemporaryDirectory() as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(f"runs:/{universe.run_id}/model", dst_path=folder)
        )
        scalers = json.loads((local / "scalers.json").read_text())
        model = ForecastModel(local)
        record = pd.read_csv(
            mlflow.artifacts.download_artifacts(
                run_id=universe.run_id,
                artifact_path="reports/test_predictions.csv",
                dst_path=folder,
            )
        )
    assert list(scalers) == pooled and model.card.trained_on == pooled
    # Each ticker scaled by its own rows: the same features, different means.
    assert scalers[pooled[0]]["mean"] != scalers[pooled[1]]["mean"]
    assert record.groupby("ticker").size().to_dict() == dict.fromkeys(pooled, 180)
    plots = {a.path for a in client.list_artifacts(universe.run_id, "reports/backtest")}
    assert plots == {f"reports/backtest/{t}.png" for t in pooled}


def register_oracle(name: str, prices: pd.DataFrame) -> str:
    """A champion whose walk-forward record knew every close: no candidate's interval beats it."""
    version = register_crafted_model(name, prices, trained_through="2999-01-01")
    client = MlflowClient()
    run_id = client.get_model_version(name, version).run_id
    close = prices["Close"]
    record = pd.DataFrame(
        {
            "anchor_date": prices.index[:-1].strftime("%Y-%m-%d"),
            "ticker": name.removeprefix("lstm-"),
        }
    )
    for q in ("q10", "q50", "q90"):
        record[f"forecast_{q}"] = close.shift(-1).to_numpy()[:-1]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "test_predictions.csv"
        record.to_csv(path, index=False)
        client.log_artifact(run_id, str(path), "reports")
    return version


def test_each_tickers_version_meets_its_own_gate(mlflow_env, tmp_path):
    """One pooled run, two verdicts: refused where the champion is better, promoted where
    there is none."""
    universe = new_universe(mlflow_env, 2)
    strong, fresh = universe.tickers
    ingest(universe, universe.tickers, tmp_path)
    assert register_oracle(registered_model_name(strong), universe.prices[strong]) == "1"

    done = train(universe, "--tickers", strong, fresh)
    assert done.returncode == 0, done.stderr
    assert f"registered lstm-{strong} version 2; alias 'champion' kept off it" in done.stdout
    assert "is worse than champion v1's" in done.stdout
    assert f"registered lstm-{fresh} version 1; alias 'champion' moved to it" in done.stdout
    client = MlflowClient()
    assert client.get_model_version_by_alias(f"lstm-{strong}", CHAMPION_ALIAS).version == "1"
    assert client.get_model_version_by_alias(f"lstm-{fresh}", CHAMPION_ALIAS).version == "1"


def test_one_pooled_version_serves_every_ticker_from_one_session(universe, tmp_path):
    pooled = universe.tickers[:3]
    process = PredictorProcess(tmp_path, universe.env, *universe.serve_args(pooled))
    try:
        process.start().wait_serving()
        assert re.search(r"^petr4_loaded_models 1\.0$", metrics_of(process.metrics_url), re.M)
        with ForecastClient(process.target) as client:
            answers = {t: client.forecast(t) for t in pooled}
            infos = {i.ticker: i for i in client.model_info().models}
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(
                f"runs:/{universe.run_id}/model", dst_path=folder
            )
            model = ForecastModel(local)
            for ticker, answer in answers.items():
                expected = model.for_ticker(ticker).forecast(universe.prices[ticker])
                assert answer.predicted_close == pytest.approx(expected.median[-1], rel=1e-6)
                assert (answer.model.name, answer.model.run_id) == (
                    registered_model_name(ticker),
                    universe.run_id,
                )
        assert all(list(infos[t].trained_on) == pooled for t in pooled)
    finally:
        process.stop()


def test_a_ticker_without_a_model_does_not_hold_the_others(universe, tmp_path):
    """It has prices but no champion: the others serve at once, it answers UNAVAILABLE with
    the reason, and it joins at a refresh once its first version is registered."""
    *pooled, late = universe.tickers
    process = PredictorProcess(
        tmp_path, universe.env, *universe.serve_args(universe.tickers, "--refresh-seconds", "2")
    )
    try:
        process.start().wait_serving()
        with ForecastClient(process.target) as client:
            for ticker in pooled:
                assert client.forecast(ticker).model.version == "1"
            with pytest.raises(grpc.RpcError) as refused:
                client.forecast(late)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.value.details() == (
                f"{late} is not served yet: no version of lstm-{late} has the alias 'champion' yet"
            )
            (info,) = [i for i in client.model_info().models if i.ticker == late]
            assert not info.ready and "has the alias 'champion' yet" in info.not_ready_reason
            assert f'petr4_model_ready{{ticker="{late}"}} 0.0' in metrics_of(process.metrics_url)

            done = train(universe, "--ticker", late, "--champion-tolerance", "1")
            assert done.returncode == 0, done.stderr

            def served() -> bool:
                try:
                    return client.forecast(late).model.version == "1"
                except grpc.RpcError:
                    return False

            wait_until(served, 30, f"{late} to be served")
            assert client.health() == "SERVING" and process.process.poll() is None
        assert f'petr4_model_ready{{ticker="{late}"}} 1.0' in metrics_of(process.metrics_url)
    finally:
        process.stop()
