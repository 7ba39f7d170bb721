"""One training run, tracked end to end in MLflow.

The run trains one model per walk-forward fold; their pooled test forecasts are its
evidence, and the last fold's model is the one it ships. Order matters: data problems
are found before any run exists; everything is logged before a version is registered;
the alias moves last. A run killed at any point leaves no registered version.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import torch
from lightning.pytorch.loggers import MLFlowLogger
from mlflow import MlflowClient

from services.core.forecaster import Forecasts
from services.core.model_card import ModelCard
from services.core.naming import registered_model_name
from services.core.snapshots import SnapshotStore
from trainer.data import target_dates
from trainer.evaluate import evaluate
from trainer.inputs import Lineage, dataset_input, load_prices, run_params
from trainer.registry import Decision, decide, register
from trainer.report import write_reports
from trainer.settings import TrainSettings
from trainer.walk_forward import FoldRun, pooled, trailing_folds, train_fold

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


def _register(
    client: MlflowClient,
    settings: TrainSettings,
    run,
    card: ModelCard,
    evidence: Forecasts,
    prices,
    lineage: Lineage,
) -> tuple[str, Decision]:
    """The gate's decision on the walk-forward evidence, then the version, then the alias."""
    decision = decide(
        client, card.model_name, evidence, prices, card.quantiles, settings.champion_tolerance
    )
    tags = {
        "ticker": settings.ticker,
        "synthetic": str(lineage.synthetic).lower(),
        "test_mae_brl": f"{card.metrics['lstm']['mae_brl']:.6f}",
        "naive_mae_brl": f"{card.metrics['naive']['mae_brl']:.6f}",
        "test_interval_score_brl": f"{card.metrics['lstm']['interval_score_brl']:.6f}",
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


def _log_metrics(rows, folds: list[FoldRun], settings: TrainSettings) -> None:
    """The pooled test metrics as ``test_*``; each fold's, by fold, as ``fold_*`` histories."""
    mlflow.log_metrics(
        {
            f"test_{row.replace(', ', '_')}_{key}": value
            for row, values in rows.items()
            for key, value in values.items()
            if np.isfinite(value)
        }
        | {f"fit_seconds_fold{n}": fold.fit_seconds for n, fold in enumerate(folds, 1)}
        # the shipped model's own calibration, as before folds existed
        | {f"calibration_{k}": v for k, v in folds[-1].card.calibration.to_dict().items()}
    )
    for step, fold in enumerate(folds, 1):
        f = fold.forecasts
        lstm = evaluate(
            fold.dm.prices, f.anchor_dates, f.actual, {"lstm": f.prices}, settings.quantiles
        )
        mlflow.log_metrics(
            {f"fold_lstm_{key}": value for key, value in lstm["lstm"].items() if np.isfinite(value)}
            | {f"fold_calibration_{k}": v for k, v in fold.card.calibration.to_dict().items()},
            step=step,
        )


def train(settings: TrainSettings, client: MlflowClient | None = None) -> TrainResult:
    client = client or MlflowClient()
    started = time.perf_counter()
    torch.set_num_threads(settings.threads)

    prices, lineage = load_prices(settings, SnapshotStore(client, settings.prices_experiment))
    folds = trailing_folds(prices, settings)  # too little data fails here, before any run exists
    params = run_params(settings, prices, lineage, folds)
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

        runs = []
        for number, dm in enumerate(folds, 1):
            shipped = number == len(folds)  # its losses are the run's own, unprefixed
            logger = MLFlowLogger(
                run_id=run_id,
                tracking_uri=mlflow.get_tracking_uri(),
                prefix="" if shipped else f"fold{number}",
            )
            runs.append(train_fold(settings, dm, scratch / f"fold{number}", logger))
            log.info("fold %d/%d (test from %s) trained", number, len(folds), runs[-1].label)
        model = runs[-1]
        evidence, unshrunk, labels = pooled(runs)
        rows = evaluate(
            prices,
            evidence.anchor_dates,
            evidence.actual,
            {"lstm": evidence.prices, "lstm, unshrunk": unshrunk},
            settings.quantiles,
        )
        # Scored over every fold's test days, the metrics complete the card, written once.
        card = model.card.model_copy(
            update={
                "ticker": settings.ticker,
                "model_name": name,
                "run_id": run_id,
                "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "data": lineage.for_card(prices),
                "metrics": {row: rows[row] for row in ("lstm", "naive")},
                "walk_forward": [r.dm.splits.to_params() for r in runs],
            }
        )
        card.write(model.folder)
        _log_metrics(rows, runs, settings)
        first, last = runs[0].dm.splits.test[0], model.dm.splits.test[1]
        title = (
            f"{settings.ticker}: {len(runs)} walk-forward folds, tests {first:%Y-%m-%d} to {last:%Y-%m-%d}"
            + (" (SYNTHETIC data)" if lineage.synthetic else "")
        )
        summary = write_reports(
            scratch / "reports",
            evidence,
            target_dates(prices, evidence.anchor_dates),
            labels,
            rows,
            title,
            settings.quantiles,
        )
        mlflow.log_artifacts(str(model.folder), "model")
        mlflow.log_artifact(model.checkpoint_path, "checkpoints")
        mlflow.log_artifacts(str(scratch / "reports"), "reports")

        fit_seconds = sum(r.fit_seconds for r in runs)
        result = TrainResult(run_id, rows, summary, name, timings={"fit_seconds": fit_seconds})
        if settings.register_model:  # last: a run that dies before here registers nothing
            result.version, result.decision = _register(
                client, settings, run, card, evidence, prices, lineage
            )
    result.timings["total_seconds"] = time.perf_counter() - started
    log.info("training run %s took %.1f s", result.run_id, result.timings["total_seconds"])
    return result


def _scratch(settings: TrainSettings) -> str:
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    return str(settings.work_dir)
