from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from scripts.harness.processes import PredictorProcess, run_cli
from services.ingestion.sources import SyntheticSource
from tests.helpers import SMALL_TRAINING, ingest_csv


@dataclass
class ServedModel:
    """A champion trained on a synthetic series, ready to serve."""

    ticker: str
    prices_experiment: str
    prices: pd.DataFrame
    csv: Path
    env: dict

    @property
    def name(self) -> str:
        return f"lstm-{self.ticker}"

    def serve_args(self, *extra: str) -> list[str]:
        return ["--tickers", self.ticker, "--prices-experiment", self.prices_experiment, *extra]


@pytest.fixture(scope="session")
def served_model(mlflow_server, tmp_path_factory) -> ServedModel:
    suffix = uuid.uuid4().hex[:6].upper()  # tickers are upper case
    ticker, experiment = f"S{suffix}.SA", f"prices-{suffix}"
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    prices = SyntheticSource(seed=21, first_date=date(2021, 1, 4), end=date(2023, 12, 29)).fetch(
        "S.SA", None
    )
    csv = tmp_path_factory.mktemp("served") / "prices.csv"
    ingest_csv(ticker, experiment, prices, csv, env)
    trained = run_cli(
        [
            "petr4-train",
            "--ticker",
            ticker,
            "--prices-experiment",
            experiment,
            "--experiment",
            f"training-{suffix}",
            *SMALL_TRAINING,
            "--champion-tolerance",
            "1.0",
        ],
        env,
    )
    assert trained.returncode == 0, trained.stderr
    assert "alias 'champion' moved to it" in trained.stdout
    return ServedModel(ticker, experiment, prices, csv, env)


@pytest.fixture(scope="module")
def predictor(served_model, tmp_path_factory):
    process = PredictorProcess(
        tmp_path_factory.mktemp("predictor"),
        served_model.env,
        *served_model.serve_args("--max-history-bars", "400"),
    )
    try:
        yield process.start().wait_serving()
    finally:
        process.stop()
