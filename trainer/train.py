"""One training run, tracked end to end in MLflow.

Order matters: data problems are found before any run exists; everything is logged
before a version is registered; the alias moves last. A run killed at any point
leaves no registered version.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from mlflow import MlflowClient
from mlflow.data.http_dataset_source import HTTPDatasetSource

from services.core.features import (
    FEATURES,
    TARGET,
    WARMUP,
    Calibration,
    to_prices,
    to_return_quantiles,
)
from services.core.forecaster import (
    METADATA_FILE,
    MODEL_FILE,
    SCALER_FILE,
    ForecastModel,
    Forecasts,
)
from services.core.naming import registered_model_name
from services.core.prices import read_price_csv, validate_prices
from services.core.snapshots import SnapshotStore, sha256_file
from trainer.data import DataError, PriceDataModule, target_dates
from trainer.evaluate import evaluate, fit_calibration, summary_table
from trainer.export import export_onnx
from trainer.module import LSTMLightModule
from trainer.registry import Decision, decide, register
from trainer.report import backtest_plot, predictions_frame
from trainer.settings import TrainSettings

log = logging.getLogger(__name__)

# Lightning 2.6 still asks torch 2.13 for a deprecated pytree class; harmless, and not ours.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@dataclass
class Lineage:
    """Where the training prices came from."""

    source: str  # "snapshot" or "file"
    location: str
    sha256: str
    synthetic: bool
    snapshot_run_id: str = ""


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, dict[str, float]]
    summary: str
    model_name: str
    version: str | None = None
    decision: Decision | None = None
    timings: dict[str, float] = field(default_factory=dict)


def load_prices(settings: TrainSettings, store: SnapshotStore) -> tuple[pd.DataFrame, Lineage]:
    if settings.data is not None:
        frame = read_price_csv(settings.data)
        lineage = Lineage("file", str(settings.data.resolve()), sha256_file(settings.data), False)
    else:
        snapshot = store.latest(settings.ticker)
        if snapshot is None:
            raise DataError(
                f"no snapshot of {settings.ticker} in MLflow experiment '{store.experiment}': "
                f"run petr4-ingest --tickers {settings.ticker} first, or pass --data PATH.csv"
            )
        frame = store.load(snapshot)
        lineage = Lineage(
            "snapshot", snapshot.artifact_path, snapshot.sha256, snapshot.synthetic, snapshot.run_id
        )
    frame, _ = validate_prices(frame, settings.ticker)  # non-finite or inconsistent rows stop here
    return frame, lineage


def _dataset_input(frame: pd.DataFrame, lineage: Lineage, ticker: str):
    """The prices as an MLflow dataset input: name, digest and a URL that fetches them."""
    if lineage.snapshot_run_id and mlflow.get_tracking_uri().startswith("http"):
        source = HTTPDatasetSource(
            f"{mlflow.get_tracking_uri()}/get-artifact?path={lineage.location}&run_uuid={lineage.snapshot_run_id}"
        )
    else:
        source = lineage.location
    with warnings.catch_warnings():
        # MLflow registers two identical local-file sources and warns about its own ambiguity.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return mlflow.data.from_pandas(
            frame.reset_index(), source=source, name=f"{ticker} prices", digest=lineage.sha256[:32]
        )


def _write_model_folder(
    folder: Path,
    net,
    dm: PriceDataModule,
    calibration: Calibration,
    settings: TrainSettings,
    extra: dict,
) -> None:
    """model.onnx (checked against torch), scaler.json and metadata.json: what is served."""
    folder.mkdir(parents=True, exist_ok=True)
    parity = export_onnx(net, dm.subset("test").x, folder / MODEL_FILE)
    (folder / SCALER_FILE).write_text(json.dumps(dm.scaler.to_dict(), indent=2))
    metadata = {
        "ticker": settings.ticker,
        "window": settings.window,
        "bars_needed": settings.window + WARMUP,
        "features": list(FEATURES),
        "target": TARGET,
        "quantiles": settings.quantiles,
        "interval_level": settings.quantiles[-1] - settings.quantiles[0],
        "calibration": calibration.to_dict(),
        "onnx_max_abs_diff": parity,
        **extra,
    }
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2))


def _run_params(
    settings: TrainSettings, prices: pd.DataFrame, lineage: Lineage, dm: PriceDataModule
) -> dict:
    """Data and training parameters; the network's own come from Lightning's hyperparameters."""
    return {
        "ticker": settings.ticker,
        "window": settings.window,
        "features": ",".join(FEATURES),
        "target": TARGET,
        "data_first_date": prices.index[0].strftime("%Y-%m-%d"),
        "data_last_date": prices.index[-1].strftime("%Y-%m-%d"),
        "data_rows": len(prices),
        "data_source": lineage.source,
        "data_sha256": lineage.sha256,
        "snapshot_run_id": lineage.snapshot_run_id or "none",
        "scaler_fitted_through": dm.scaler.fitted_through,
        "target_center_removed": dm.target_center,
        **dm.splits.to_params(),
        "batch_size": settings.batch_size,
        "max_epochs": settings.max_epochs,
        "patience": settings.patience,
        "seed": settings.seed,
    }


def _fit(settings: TrainSettings, dm: PriceDataModule, run_id: str, scratch: Path):
    """Train with early stopping: the best module, its checkpoint callback, epochs run, seconds."""
    module = LSTMLightModule(
        n_features=len(FEATURES),
        hidden_size=settings.hidden_size,
        num_layers=settings.num_layers,
        dropout=settings.dropout,
        quantiles=settings.quantiles,
        learning_rate=settings.learning_rate,
    )
    checkpoint = ModelCheckpoint(dirpath=scratch, filename="best", monitor="val_loss", save_top_k=1)
    trainer = L.Trainer(
        max_epochs=settings.max_epochs,
        callbacks=[checkpoint, EarlyStopping("val_loss", patience=settings.patience)],
        logger=MLFlowLogger(run_id=run_id, tracking_uri=mlflow.get_tracking_uri()),
        accelerator="cpu",
        devices=1,
        deterministic=True,
        gradient_clip_val=1.0,
        enable_progress_bar=settings.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=scratch,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    fit_seconds = time.perf_counter() - started
    best = LSTMLightModule.load_from_checkpoint(checkpoint.best_model_path).eval()
    return best, checkpoint, trainer.current_epoch, fit_seconds


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


def _write_reports(
    folder: Path,
    forecasts: Forecasts,
    rows: dict,
    dm: PriceDataModule,
    settings: TrainSettings,
    synthetic: bool,
) -> str:
    """The summary table, the test predictions and the backtest plot; returns the summary."""
    first, last = dm.splits.test
    title = f"{settings.ticker}: test {first:%Y-%m-%d} to {last:%Y-%m-%d}" + (
        " (SYNTHETIC data)" if synthetic else ""
    )
    summary = summary_table(rows, title)
    folder.mkdir()
    predictions = predictions_frame(
        forecasts, target_dates(dm.prices, forecasts.anchor_dates), settings.quantiles
    )
    predictions.to_csv(folder / "test_predictions.csv", index=False)
    backtest_plot(predictions, title, folder / "backtest.png")
    (folder / "summary.md").write_text(summary + "\n")
    return summary


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
    params = _run_params(settings, prices, lineage, dm)
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
            _dataset_input(prices, lineage, settings.ticker),
            context="training",
            tags={"snapshot_run_id": lineage.snapshot_run_id or "none"},
        )

        best, checkpoint, epochs, fit_seconds = _fit(settings, dm, run_id, scratch)
        val = dm.subset("val")
        with torch.no_grad():
            raw_val = best.net(torch.from_numpy(val.x)).numpy()
        level = settings.quantiles[-1] - settings.quantiles[0]
        calibration = fit_calibration(raw_val, val.y, val.last_close, val.volatility, level)

        folder = scratch / "model"
        _write_model_folder(
            folder,
            best.net,
            dm,
            calibration,
            settings,
            {
                "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "run_id": run_id,
                "model_name": name,
                "data": {
                    "first_date": params["data_first_date"],
                    "last_date": params["data_last_date"],
                    "source": lineage.source,
                    "sha256": lineage.sha256,
                    "synthetic": lineage.synthetic,
                    "snapshot_run_id": lineage.snapshot_run_id,
                },
                "splits": dm.splits.to_params(),
                "best_epoch_val_loss": float(checkpoint.best_model_score),
                "epochs": epochs,
            },
        )
        forecasts, rows = _evaluate(ForecastModel(folder), dm, calibration)
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
        # Scoring needed the served model, so its metrics join its metadata last.
        metadata = json.loads((folder / METADATA_FILE).read_text())
        metadata["metrics"] = {row: rows[row] for row in ("lstm", "naive")}
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2))

        summary = _write_reports(
            scratch / "reports", forecasts, rows, dm, settings, lineage.synthetic
        )
        mlflow.log_artifacts(str(folder), "model")
        mlflow.log_artifact(checkpoint.best_model_path, "checkpoints")
        mlflow.log_artifacts(str(scratch / "reports"), "reports")

        result = TrainResult(run_id, rows, summary, name, timings={"fit_seconds": fit_seconds})
        if settings.register:  # last: a run that dies before here registers nothing
            result.decision = decide(
                client,
                name,
                rows["lstm"]["mae_brl"],
                rows["naive"]["mae_brl"],
                prices,
                forecasts.anchor_dates,
                forecasts.actual,
                settings.champion_tolerance,
            )
            tags = {
                "ticker": settings.ticker,
                "synthetic": str(lineage.synthetic).lower(),
                "test_mae_brl": f"{rows['lstm']['mae_brl']:.6f}",
                "naive_mae_brl": f"{rows['naive']['mae_brl']:.6f}",
                "data_last_date": params["data_last_date"],
            }
            source = f"{run.info.artifact_uri}/model"
            result.version = register(client, name, run_id, source, tags, result.decision)
            mlflow.set_tags(
                {
                    "registered_version": result.version,
                    "champion": str(result.decision.promote).lower(),
                    "champion_reason": result.decision.reason,
                }
            )
    result.timings["total_seconds"] = time.perf_counter() - started
    log.info("training run %s took %.1f s", result.run_id, result.timings["total_seconds"])
    return result


def _scratch(settings: TrainSettings) -> str:
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    return str(settings.work_dir)
