"""One training run, tracked end to end in MLflow.

Order matters: data problems are found before any run exists; everything is logged
before a version is registered; the alias moves last. A run killed at any point
leaves no registered version.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import torch
from mlflow import MlflowClient

from services.core.features import Calibration, to_prices, to_return_quantiles
from services.core.forecaster import ForecastModel
from services.core.model_card import ModelCard
from services.core.naming import registered_model_name
from services.core.scoring import against_naive
from services.core.snapshots import SnapshotStore
from trainer.data import PriceDataModule, target_dates
from trainer.evaluate import evaluate, fit_calibration
from trainer.export import write_served_model
from trainer.fit import fit
from trainer.inputs import Lineage, dataset_input, load_prices, run_params
from trainer.registry import Decision, decide, register
from trainer.report import write_reports
from trainer.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, dict[str, float]]
    summary: str
    model_name: str
    version: str | None = None
    decision: Decision | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _evaluate(served: ForecastModel, dm: PriceDataModule, calibration: Calibration):
    """Test-window forecasts through the served path (ONNX + JSON scaler), against the baselines."""
    test = dm.subset("test")
    forecasts = served.forecast_windows(test)
    unshrunk = to_prices(
        test.last_close,
        to_return_quantiles(
            served.raw(test.x), test.volatility, Calibration(1.0, calibration.widen)
        ),
    )
    rows = evaluate(
        dm.prices,
        test.anchor_dates,
        forecasts.actual,
        {"lstm": forecasts.prices, "lstm, unshrunk": unshrunk},
    )
    return forecasts, rows


def _register(
    client: MlflowClient,
    settings: TrainSettings,
    run,
    card: ModelCard,
    forecasts,
    dm: PriceDataModule,
    lineage: Lineage,
) -> tuple[str, Decision]:
    """The gate's decision on the same test days, then the version, then the alias."""
    decision = decide(
        client,
        card.model_name,
        against_naive(forecasts.median, forecasts.actual, forecasts.last_close),
        dm.prices,
        forecasts.anchor_dates,
        forecasts.actual,
        settings.champion_tolerance,
    )
    tags = {
        "ticker": settings.ticker,
        "synthetic": str(lineage.synthetic).lower(),
        "test_mae_brl": f"{card.metrics['lstm']['mae_brl']:.6f}",
        "naive_mae_brl": f"{card.metrics['naive']['mae_brl']:.6f}",
        "data_last_date": card.data.last_date,
    }
    source = f"{run.info.artifact_uri}/model"
    version = register(client, card.model_name, run.info.run_id, source, tags, decision)
    mlflow.set_tags(
        {
            "registered_version": version,
            "champion": str(decision.promote).lower(),
            "champion_reason": decision.reason,
        }
    )
    return version, decision


def train(settings: TrainSettings, client: MlflowClient | None = None) -> TrainResult:
    client = client or MlflowClient()
    started = time.perf_counter()
    # Lightning sets its logger to INFO when imported; its GPU/TPU notices are noise here.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    L.seed_everything(settings.seed, workers=True, verbose=False)
    torch.set_num_threads(settings.threads)

    prices, lineage = load_prices(settings, SnapshotStore(client, settings.prices_experiment))
    dm = PriceDataModule(
        prices,
        settings.window,
        settings.val_days,
        settings.test_days,
        settings.test_start,
        settings.batch_size,
        settings.seed,
        settings.ticker,
    )
    dm.setup()  # too little data fails here, before any run exists
    params = run_params(settings, prices, lineage, dm)
    name = registered_model_name(settings.ticker)

    mlflow.set_experiment(settings.experiment)
    with (
        mlflow.start_run(run_name=f"{settings.ticker} {params['data_last_date']}") as run,
        tempfile.TemporaryDirectory(dir=_scratch(settings)) as scratch,
    ):
        run_id, scratch = run.info.run_id, Path(scratch)
        mlflow.set_tags({"ticker": settings.ticker, "synthetic": str(lineage.synthetic).lower()})
        mlflow.log_params(params)
        mlflow.log_input(
            dataset_input(prices, lineage, settings.ticker),
            context="training",
            tags={"snapshot_run_id": lineage.snapshot_run_id or "none"},
        )

        best, checkpoint, epochs, fit_seconds = fit(settings, dm, run_id, scratch)
        val = dm.subset("val")
        with torch.no_grad():
            raw_val = best.net(torch.from_numpy(val.x)).numpy()
        level = settings.quantiles[-1] - settings.quantiles[0]
        calibration = fit_calibration(raw_val, val.y, val.last_close, val.volatility, level)

        folder = scratch / "model"
        parity = write_served_model(folder, best.net, dm.subset("test").x, dm.scaler)
        card = ModelCard(
            window=settings.window,
            quantiles=tuple(settings.quantiles),
            calibration=calibration,
            ticker=settings.ticker,
            model_name=name,
            run_id=run_id,
            trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
            data=lineage.for_card(prices),
            splits=dm.splits.to_params(),
            epochs=epochs,
            best_epoch_val_loss=float(checkpoint.best_model_score),
            onnx_max_abs_diff=parity,
        )
        forecasts, rows = _evaluate(ForecastModel(folder, card), dm, calibration)
        # Scored through the served path, its test metrics complete the card, written once.
        card = card.model_copy(update={"metrics": {row: rows[row] for row in ("lstm", "naive")}})
        card.write(folder)
        mlflow.log_metrics(
            {
                f"test_{row.replace(', ', '_')}_{key}": value
                for row, values in rows.items()
                for key, value in values.items()
                if np.isfinite(value)
            }
            | {"calibration_shrink": calibration.shrink, "calibration_widen": calibration.widen}
            | {"fit_seconds": fit_seconds}
        )
        first, last = dm.splits.test
        title = f"{settings.ticker}: test {first:%Y-%m-%d} to {last:%Y-%m-%d}" + (
            " (SYNTHETIC data)" if lineage.synthetic else ""
        )
        targets = target_dates(dm.prices, forecasts.anchor_dates)
        summary = write_reports(
            scratch / "reports", forecasts, targets, rows, title, settings.quantiles
        )
        mlflow.log_artifacts(str(folder), "model")
        mlflow.log_artifact(checkpoint.best_model_path, "checkpoints")
        mlflow.log_artifacts(str(scratch / "reports"), "reports")

        result = TrainResult(run_id, rows, summary, name, timings={"fit_seconds": fit_seconds})
        if settings.register_model:  # last: a run that dies before here registers nothing
            result.version, result.decision = _register(
                client, settings, run, card, forecasts, dm, lineage
            )
    result.timings["total_seconds"] = time.perf_counter() - started
    log.info("training run %s took %.1f s", result.run_id, result.timings["total_seconds"])
    return result


def _scratch(settings: TrainSettings) -> str:
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    return str(settings.work_dir)
