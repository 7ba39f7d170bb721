"""petr4-train against a real MLflow server: lineage, artifacts, registry, alias, failures."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import uuid
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from scripts.harness.processes import BIN, run_cli, wait_until
from services.core.features import FEATURES, TARGET
from services.core.forecaster import ForecastModel
from services.core.model_card import ModelCard
from services.core.naming import CHAMPION_ALIAS
from services.ingestion.sources import SyntheticSource
from tests.helpers import SMALL_TRAINING, predictable_prices, register_crafted_model
from trainer.registry import out_of_sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:6].upper()  # tickers are upper case
    return {
        "ticker": f"T{suffix}.SA",
        "prices": f"prices-{suffix}",
        "training": f"training-{suffix}",
    }


@pytest.fixture
def prices() -> pd.DataFrame:
    return SyntheticSource(seed=11, first_date=date(2021, 1, 4), end=date(2023, 12, 29)).fetch(
        "T.SA", None
    )


def ingest(names, env, prices, tmp_path) -> None:
    csv = tmp_path / "prices.csv"
    prices.to_csv(csv)
    result = run_cli(
        [
            "petr4-ingest",
            "--tickers",
            names["ticker"],
            "--experiment",
            names["prices"],
            "--source",
            f"csv:{csv}",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr


def train_args(names, *extra) -> list[str]:
    return [
        "petr4-train",
        "--ticker",
        names["ticker"],
        "--prices-experiment",
        names["prices"],
        "--experiment",
        names["training"],
        *SMALL_TRAINING,
        *extra,
    ]


def train_cli(names, env, *extra):
    return run_cli(
        train_args(names, *extra),
        env,
    )


def versions(name: str) -> list:
    return MlflowClient().search_model_versions(f"name = '{name}'")


def test_training_registers_a_version_with_every_artifact(mlflow_env, names, prices, tmp_path):
    ingest(names, mlflow_env, prices, tmp_path)
    result = train_cli(names, mlflow_env)
    assert result.returncode == 0, result.stderr
    assert (
        "| naive |" in result.stdout and "| drift |" in result.stdout and "| ma5 |" in result.stdout
    )
    assert f"registered lstm-{names['ticker']} version 1" in result.stdout

    client = MlflowClient()
    (version,) = versions(f"lstm-{names['ticker']}")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    artifacts = {
        a.path
        for folder in ("model", "checkpoints", "reports")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert artifacts == {
        "model/model.onnx",
        "model/scalers.json",
        "model/metadata.json",
        "checkpoints/best.ckpt",
        "reports/backtest",
        "reports/test_predictions.csv",
        "reports/summary.md",
    }
    assert [a.path for a in client.list_artifacts(run.info.run_id, "reports/backtest")] == [
        f"reports/backtest/{names['ticker']}.png"
    ]
    params = run.data.params
    assert params["ticker"] == names["ticker"] and params["window"] == "20"
    assert params["hidden_size"] == "16" and params["num_layers"] == "2"
    for key in (
        "data_first_date",
        "data_last_date",
        "train_end",
        "val_start",
        "test_start",
        "test_end",
    ):
        assert params[key]
    for key in (
        "test_lstm_mae_brl",
        "test_lstm_rmse_brl",
        "test_lstm_mape_pct",
        "test_lstm_mae_ratio_naive",
        "test_lstm_coverage",
        "test_lstm_interval_width_brl",
        "test_lstm_interval_score_brl",
        "test_lstm_pinball_brl",
        "test_naive_mae_brl",
        "test_drift_mae_brl",
        "test_ma5_mae_brl",
    ):
        assert np.isfinite(run.data.metrics[key]), key
    # The shipped model's losses are the run's own; the earlier folds' carry their number.
    for key in ("val_loss", "train_loss", "fold1-val_loss", "fold2-train_loss"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 3, key  # one per epoch
    # One entry per fold, by fold, for every fold's test metrics.
    history = client.get_metric_history(run.info.run_id, "fold_lstm_interval_score_brl")
    assert [m.step for m in history] == [1, 2, 3]
    assert params["folds"] == "3"

    (dataset_input,) = run.inputs.dataset_inputs
    snapshot_run = params["snapshot_run_id"]
    assert dataset_input.dataset.digest == params["data_sha256"][:32]
    assert snapshot_run in dataset_input.dataset.source
    assert {t.key: t.value for t in dataset_input.tags}["snapshot_run_id"] == snapshot_run

    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            f"models:/lstm-{names['ticker']}/1", dst_path=folder
        )
        model = ForecastModel(local)
        card = ModelCard.read(Path(local))
    fit = card.fit_for(names["ticker"])
    assert card.features == FEATURES and card.target == TARGET
    assert fit.data.snapshot_run_id == snapshot_run and card.trained_on == [names["ticker"]]
    assert fit.metrics["lstm"]["mae_brl"] == pytest.approx(run.data.metrics["test_lstm_mae_brl"])
    assert model.window == 20 and card.onnx_max_abs_diff <= 1e-5

    # The evidence: three consecutive 60-day test blocks, the last one the shipped model's.
    assert [fold["test_start"] for fold in card.walk_forward][-1] == card.splits["test_start"]
    assert params["walk_forward_test_start"] == card.walk_forward[0]["test_start"]
    with tempfile.TemporaryDirectory() as folder:
        record = pd.read_csv(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id,
                artifact_path="reports/test_predictions.csv",
                dst_path=folder,
            )
        )
    assert record.groupby("fold").size().to_dict() == {
        fold["test_start"]: 60 for fold in card.walk_forward
    }
    assert record["anchor_date"].is_monotonic_increasing and record["anchor_date"].is_unique
    assert record["target_date"].iloc[-1] == prices.index[-1].strftime("%Y-%m-%d")


def test_alias_moves_on_an_improvement(mlflow_env, names, prices, tmp_path):
    name = f"lstm-{names['ticker']}"
    ingest(names, mlflow_env, prices, tmp_path)
    assert register_crafted_model(name, prices) == "1"
    result = train_cli(names, mlflow_env)
    assert result.returncode == 0, result.stderr
    assert f"registered {name} version 2; alias 'champion' moved to it" in result.stdout
    assert "<= champion v1's" in result.stdout
    assert MlflowClient().get_model_version_by_alias(name, CHAMPION_ALIAS).version == "2"


def test_alias_stays_when_a_worse_training_follows(mlflow_env, names, tmp_path):
    """A champion that learned the series' signal, then a training that learns nothing: the
    second is registered, and the alias stays, for its interval is worse on the same days."""
    name = f"lstm-{names['ticker']}"
    ingest(names, mlflow_env, predictable_prices(days=900), tmp_path)
    first = train_cli(names, mlflow_env, "--max-epochs", "10", "--learning-rate", "0.01")
    assert "version 1; alias 'champion' moved to it" in first.stdout, first.stdout + first.stderr
    champion = MlflowClient().get_model_version_by_alias(name, CHAMPION_ALIAS)
    assert float(champion.tags["test_mae_brl"]) < float(champion.tags["naive_mae_brl"])

    # A 5 % slack lets a network that learned nothing (about naive's MAE) past the naive check,
    # so the comparison of its interval with the champion's is the one that refuses it.
    second = train_cli(
        names,
        mlflow_env,
        *("--max-epochs", "1", "--learning-rate", "1e-9", "--champion-tolerance", "0.05"),
    )
    assert second.returncode == 0, second.stderr
    assert f"registered {name} version 2; alias 'champion' kept off it" in second.stdout
    assert "is worse than champion v1's" in second.stdout
    assert MlflowClient().get_model_version_by_alias(name, CHAMPION_ALIAS).version == "1"


def test_the_champion_is_judged_only_on_days_it_had_not_seen(mlflow_env, names, prices, tmp_path):
    """Its walk-forward record for the earlier days, its served model for the days after its
    data; never a day it trained or validated on."""
    name = f"lstm-{names['ticker']}"
    ingest(names, mlflow_env, prices, tmp_path)
    assert train_cli(names, mlflow_env).returncode == 0
    with tempfile.TemporaryDirectory() as folder:
        record = pd.read_csv(
            mlflow.artifacts.download_artifacts(
                run_id=versions(name)[0].run_id,
                artifact_path="reports/test_predictions.csv",
                dst_path=folder,
            ),
            index_col="anchor_date",
            parse_dates=["anchor_date"],
        )
    later = SyntheticSource(seed=11, first_date=date(2021, 1, 4), end=date(2024, 3, 29)).fetch(
        "T.SA", None
    )  # the same days, and a quarter more
    frame = out_of_sample(name, "1", names["ticker"], later, later.index[:-1])
    new_days = later.index[len(prices) - 1 : -1]  # anchors whose next day the champion never saw
    assert frame.index.equals(record.index.append(new_days))
    np.testing.assert_allclose(
        frame.loc[record.index].to_numpy(),
        record[["forecast_q10", "forecast_q50", "forecast_q90"]].to_numpy(),
        rtol=1e-9,
    )


def test_killed_training_registers_nothing(mlflow_env, names, prices, tmp_path):
    ingest(names, mlflow_env, prices, tmp_path)
    # The later flags override the small defaults: train long enough to be killed.
    args = train_args(names, "--max-epochs", "200", "--patience", "200")
    process = subprocess.Popen(
        [str(BIN / args[0]), *args[1:]],
        env=mlflow_env | {"PATH": str(BIN)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = MlflowClient()

    def training_has_logged_an_epoch() -> bool:
        experiment = client.get_experiment_by_name(names["training"])
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        return bool(runs) and any(key.endswith("val_loss") for key in runs[0].data.metrics)

    try:
        wait_until(training_has_logged_an_epoch, 120, "the first epoch to be logged")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    (run,) = client.search_runs([client.get_experiment_by_name(names["training"]).experiment_id])
    assert run.info.status == "RUNNING"  # it never finished, and nothing was registered
    assert versions(f"lstm-{names['ticker']}") == []


def test_no_snapshot_is_a_clear_error(mlflow_env, names):
    result = train_cli(names, mlflow_env)
    assert result.returncode == 2
    assert (
        f"no snapshot of {names['ticker']}" in result.stderr and "run petr4-ingest" in result.stderr
    )
    assert MlflowClient().get_experiment_by_name(names["training"]) is None  # no run was started


def test_too_little_data_is_a_clear_error(mlflow_env, names, prices, tmp_path):
    ingest(names, mlflow_env, prices.iloc[-150:], tmp_path)
    result = train_cli(names, mlflow_env)
    assert result.returncode == 2
    assert "60 test, 60 validation and at least 100 training samples are needed" in result.stderr
    assert versions(f"lstm-{names['ticker']}") == []


def test_non_finite_prices_are_a_clear_error(mlflow_env, names, prices, tmp_path):
    broken = prices.copy()
    broken.loc["2023-06-01", "Close"] = np.inf
    csv = tmp_path / "broken.csv"
    broken.to_csv(csv)
    result = train_cli(names, mlflow_env, "--data", str(csv))
    assert result.returncode == 2
    assert "NaN or infinite values on 2023-06-01" in result.stderr
    assert versions(f"lstm-{names['ticker']}") == []
