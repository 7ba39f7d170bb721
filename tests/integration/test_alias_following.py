"""A running predictor follows the champion alias: a real MLflow, real trainings, real calls."""

from __future__ import annotations

import re
import tempfile
import threading
import urllib.request
import uuid
from datetime import date
from pathlib import Path

import grpc
import mlflow
import pytest
from mlflow import MlflowClient

from scripts.harness.processes import PredictorProcess, run_cli, wait_until
from services.client.client import ForecastClient
from services.core.naming import CHAMPION_ALIAS, registered_model_name
from services.ingestion.sources import SyntheticSource
from tests.helpers import SMALL_TRAINING, ingest_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REFRESH_SECONDS = 1.0


class Callers:
    """Eight threads forecasting without pause, counting answers by version and failures."""

    def __init__(self, target: str, ticker: str, count: int = 8):
        self.target, self.ticker = target, ticker
        self.versions: list[str] = []  # each version in the order first seen
        self.answers = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._call) for _ in range(count)]

    def _call(self) -> None:
        with ForecastClient(self.target, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    version = client.forecast(self.ticker).model.version
                except grpc.RpcError as error:
                    with self._lock:
                        self.failures.append(f"{error.code().name}: {error.details()}")
                    continue
                with self._lock:
                    self.answers += 1
                    if version not in self.versions:
                        self.versions.append(version)

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def train(ticker: str, prices_experiment: str, env: dict) -> str:
    done = run_cli(
        [
            "petr4-train",
            "--ticker",
            ticker,
            "--prices-experiment",
            prices_experiment,
            "--experiment",
            f"training-{prices_experiment}",
            *SMALL_TRAINING,
            "--champion-tolerance",
            "1",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def register_without_scaler(name: str, version: str) -> str:
    """A version whose model folder lacks scalers.json: registered, but it cannot serve."""
    with tempfile.TemporaryDirectory() as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=folder)
        )
        (local / "scalers.json").unlink()
        mlflow.set_experiment("broken-models")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(local), "model")
    client = MlflowClient()
    return client.create_model_version(
        name, f"{run.info.artifact_uri}/model", run.info.run_id
    ).version


def metric(url: str, pattern: str) -> float | None:
    found = re.search(pattern, urllib.request.urlopen(url).read().decode())
    return float(found.group(1)) if found else None


def test_a_running_predictor_follows_the_champion(mlflow_env, tmp_path):
    ticker = f"F{uuid.uuid4().hex[:6].upper()}.SA"
    experiment = f"prices-{ticker}"
    name = registered_model_name(ticker)
    prices = SyntheticSource(seed=9, first_date=date(2021, 1, 4), end=date(2023, 12, 29)).fetch(
        ticker, None
    )
    ingest_csv(ticker, experiment, prices, tmp_path / "prices.csv", mlflow_env)
    assert "version 1; alias 'champion' moved to it" in train(ticker, experiment, mlflow_env)

    serve = ["--tickers", ticker, "--prices-experiment", experiment]
    following = PredictorProcess(
        tmp_path, mlflow_env, *serve, "--refresh-seconds", str(REFRESH_SECONDS)
    )
    pinned = PredictorProcess(
        tmp_path,
        mlflow_env,
        *serve,
        "--refresh-seconds",
        str(REFRESH_SECONDS),
        "--model-version",
        "1",
    )
    try:
        following.start().wait_serving()
        pinned.start().wait_serving()
        with Callers(following.target, ticker) as callers:
            wait_until(lambda: callers.answers > 50, 30, "the callers to get going")
            assert "version 2; alias 'champion' moved to it" in train(
                ticker, experiment, mlflow_env
            )
            # The next refresh sees the alias moved, loads v2 off the request path, swaps it in.
            wait_until(lambda: "2" in callers.versions, REFRESH_SECONDS + 30, "v2 to be served")

            broken = register_without_scaler(name, "2")
            MlflowClient().set_registered_model_alias(name, CHAMPION_ALIAS, broken)
            errors = rf'petr4_model_load_errors_total\{{ticker="{re.escape(ticker)}"\}} (\S+)'
            wait_until(lambda: metric(following.metrics_url, errors) == 1.0, 30, "v3 to be refused")
            # v2's own run, another source, one that holds no model: the cache must not answer
            # it from v2's folder (cached by run, it did, and served it as v4).
            v2 = MlflowClient().get_model_version(name, "2")
            reports = v2.source.removesuffix("/model") + "/reports"
            empty = MlflowClient().create_model_version(name, reports, v2.run_id).version
            MlflowClient().set_registered_model_alias(name, CHAMPION_ALIAS, empty)
            wait_until(lambda: metric(following.metrics_url, errors) == 2.0, 30, "v4 to be refused")
            answered = callers.answers
            wait_until(lambda: callers.answers > answered + 100, 30, "more answers after v4")

        assert callers.failures == []
        assert callers.versions == ["1", "2"]  # neither v3 nor v4 ever served
        log = following.output()
        assert f"now serving {name} v2" in log and "lacks scalers.json" in log
        assert "lacks model.onnx" in log  # v4, with its reason
        assert (
            metric(following.metrics_url, errors) == 2.0
        )  # each refused once, not at every refresh
        with ForecastClient(following.target) as client:
            (info,) = client.model_info(ticker).models
        assert (info.model.version, info.uri) == ("2", f"models:/{name}@champion")
        text = urllib.request.urlopen(following.metrics_url).read().decode()
        assert f'model_name="{name}",model_version="2"' in text
        assert f'model_name="{name}",model_version="1"' not in text
        with ForecastClient(pinned.target) as client:  # a pinned version never moves
            assert client.forecast(ticker).model.version == "1"
    finally:
        following.stop()
        pinned.stop()
