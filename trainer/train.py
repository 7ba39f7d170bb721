"""One training run, tracked end to end in MLflow.

The run trains one model per walk-forward fold, on one ticker or, pooled, on several; each
ticker's test forecasts over the folds are its evidence, and the last fold's model is the
one it ships. Order matters: data problems are found before any run exists; everything is
logged before a version is registered; an alias moves only after its version exists. A run
killed at any point leaves no version without its artifacts.
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

from services.core.model_card import ModelCard
from services.core.naming import registered_model_name
from services.core.snapshots import SnapshotStore
from trainer.data import DataError
from trainer.evaluate import evaluate
from trainer.inputs import Lineage, dataset_inputs, load_prices, run_params
from trainer.registry import Champions, Decision, decide, ensure_registered, register
from trainer.report import write_reports
from trainer.settings import TrainSettings
from trainer.walk_forward import Evidence, FoldRun, membership, pooled, trailing_folds, train_fold

log = logging.getLogger(__name__)


@dataclass
class Registered:
    """What came of one ticker's version."""

    model_name: str
    version: str
    decision: Decision


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, dict[str, dict[str, float]]]  # by ticker, then forecaster
    summary: str
    registered: dict[str, Registered] = field(default_factory=dict)  # by ticker
    timings: dict[str, float] = field(default_factory=dict)


def metric_key(ticker: str, key: str, tickers: list[str]) -> str:
    """A one-ticker run names its metrics and tags plainly; a pooled run prefixes each
    ticker's with the ticker (without '^', which MLflow keys do not take)."""
    return key if len(tickers) == 1 else f"{ticker.replace('^', '')}/{key}"


def _register(
    client: MlflowClient,
    settings: TrainSettings,
    run,
    card: ModelCard,
    evidence: dict[str, Evidence],
    prices,
) -> dict[str, Registered]:
    """Each ticker's version, judged by that ticker's own gate on its own walk-forward days."""
    registered = {}
    tickers = list(evidence)
    source = f"{run.info.artifact_uri}/model"
    with tempfile.TemporaryDirectory() as folder:
        champions = Champions(Path(folder))
        for ticker, record in evidence.items():
            name = registered_model_name(ticker)
            ensure_registered(client, name)
            decision = decide(
                client,
                ticker,
                record.forecasts,
                prices[ticker],
                card.quantiles,
                settings.champion_tolerance,
                champions,
            )
            fit = card.tickers[ticker]
            tags = {
                "ticker": ticker,
                "trained_on": ",".join(tickers),
                "synthetic": str(fit.data.synthetic).lower(),
                "test_mae_brl": f"{fit.metrics['lstm']['mae_brl']:.6f}",
                "naive_mae_brl": f"{fit.metrics['naive']['mae_brl']:.6f}",
                "test_interval_score_brl": f"{fit.metrics['lstm']['interval_score_brl']:.6f}",
                "data_last_date": fit.data.last_date,
            }
            version = register(client, name, run.info.run_id, source, tags, decision)
            registered[ticker] = Registered(name, version, decision)
            mlflow.set_tags(
                {
                    metric_key(ticker, "registered_version", tickers): version,
                    metric_key(ticker, "champion", tickers): str(decision.promote).lower(),
                    metric_key(ticker, "champion_reason", tickers): decision.reason,
                }
            )
    return registered


def _log_metrics(rows, folds: list[FoldRun], tickers: list[str]) -> None:
    """Each ticker's pooled test metrics as ``test_*`` and each fold's, by fold, as ``fold_*``
    histories; in one batch each."""
    metrics = {f"fit_seconds_fold{n}": fold.fit_seconds for n, fold in enumerate(folds, 1)}
    shipped = folds[-1].card
    for ticker in tickers:
        metrics |= {
            metric_key(ticker, f"test_{row.replace(', ', '_')}_{key}", tickers): value
            for row, values in rows[ticker].items()
            for key, value in values.items()
            if np.isfinite(value)
        }
        # the shipped model's own calibration, as before folds existed
        calibration = shipped.tickers[ticker].calibration.to_dict()
        metrics |= {
            metric_key(ticker, f"calibration_{k}", tickers): v for k, v in calibration.items()
        }
    mlflow.log_metrics(metrics)
    for step, fold in enumerate(folds, 1):
        history = {}
        for ticker, f in fold.forecasts.items():
            lstm = evaluate(
                fold.dm.prices[ticker],
                f.anchor_dates,
                f.actual,
                {"lstm": f.prices},
                fold.card.quantiles,
            )["lstm"]
            history |= {
                metric_key(ticker, f"fold_lstm_{key}", tickers): value
                for key, value in lstm.items()
                if np.isfinite(value)
            }
            calibration = fold.card.tickers[ticker].calibration.to_dict()
            history |= {
                metric_key(ticker, f"fold_calibration_{k}", tickers): v
                for k, v in calibration.items()
            }
        mlflow.log_metrics(history, step=step)


def _shipped_covers_all(folds, tickers: list[str]) -> None:
    """Every ticker must join the last fold: its model is the one the run ships."""
    last = folds[-1]
    left_out = dict(last.left_out)
    for ticker in last.tickers:
        if not last.mask("test", ticker).any():
            ends = last.prices[ticker].index[-1]
            left_out[ticker] = f"its prices end on {ends:%Y-%m-%d}, before the test block"
    if left_out:
        listed = "; ".join(f"{t}: {why}" for t, why in left_out.items())
        raise DataError(
            f"too little history for the model this run ships (test from "
            f"{folds[-1].splits.test[0]:%Y-%m-%d}): {listed} (leave them out of --tickers, or "
            "use smaller --val-days/--test-days)"
        )


def train(settings: TrainSettings, client: MlflowClient | None = None) -> TrainResult:
    client = client or MlflowClient()
    started = time.perf_counter()
    torch.set_num_threads(settings.threads)

    prices, lineages = load_prices(settings, SnapshotStore(client, settings.prices_experiment))
    tickers = list(prices)
    folds = trailing_folds(prices, settings)  # too little data fails here, before any run exists
    _shipped_covers_all(folds, tickers)
    sat_out = membership(folds)
    for ticker, why in sat_out.items():
        log.warning("%s sits out %s", ticker, "; ".join(why))
    params = run_params(settings, prices, lineages, folds)
    subject = tickers[0] if len(tickers) == 1 else f"{len(tickers)} tickers"
    synthetic = any(lineage.synthetic for lineage in lineages.values())

    mlflow.set_experiment(settings.experiment)
    with (
        mlflow.start_run(run_name=f"{subject} {params['data_last_date']}") as run,
        tempfile.TemporaryDirectory(dir=_scratch(settings)) as scratch,
    ):
        run_id, scratch = run.info.run_id, Path(scratch)
        tags = {"tickers": ",".join(tickers), "synthetic": str(synthetic).lower()}
        mlflow.set_tags(tags | ({"ticker": tickers[0]} if len(tickers) == 1 else {}))
        mlflow.log_params(params)
        dataset_inputs(prices, lineages)

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
        evidence = pooled(runs)
        rows = {
            t: evaluate(
                prices[t],
                e.forecasts.anchor_dates,
                e.forecasts.actual,
                {"lstm": e.forecasts.prices, "lstm, unshrunk": e.unshrunk},
                settings.quantiles,
            )
            for t, e in evidence.items()
        }
        card = _card(model.card, run_id, runs, prices, lineages, rows)
        card.write(model.folder)
        _log_metrics(rows, runs, tickers)
        first, last = runs[0].dm.splits.test[0], model.dm.splits.test[1]
        title = f"{len(runs)} walk-forward folds, tests {first:%Y-%m-%d} to {last:%Y-%m-%d}" + (
            " (SYNTHETIC data)" if synthetic else ""
        )
        summary = write_reports(
            scratch / "reports", evidence, prices, rows, title, settings.quantiles, sat_out
        )
        mlflow.log_artifacts(str(model.folder), "model")
        mlflow.log_artifact(model.checkpoint_path, "checkpoints")
        mlflow.log_artifacts(str(scratch / "reports"), "reports")

        fit_seconds = sum(r.fit_seconds for r in runs)
        result = TrainResult(run_id, rows, summary, timings={"fit_seconds": fit_seconds})
        if settings.register_model:  # last: a run that dies before here registers nothing
            result.registered = _register(client, settings, run, card, evidence, prices)
    result.timings["total_seconds"] = time.perf_counter() - started
    log.info("training run %s took %.1f s", result.run_id, result.timings["total_seconds"])
    return result


def _card(
    shipped: ModelCard,
    run_id: str,
    runs: list[FoldRun],
    prices,
    lineages: dict[str, Lineage],
    rows,
) -> ModelCard:
    """The shipped model's card, completed by what the whole run knows: the lineage and the
    walk-forward metrics of each ticker, scored over every fold's test days."""
    fits = {
        ticker: fit.model_copy(
            update={
                "data": lineages[ticker].for_card(prices[ticker]),
                "metrics": {row: rows[ticker][row] for row in ("lstm", "naive")},
            }
        )
        for ticker, fit in shipped.tickers.items()
    }
    return shipped.model_copy(
        update={
            "tickers": fits,
            "run_id": run_id,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "walk_forward": [r.dm.splits.to_params() for r in runs],
        }
    )


def _scratch(settings: TrainSettings) -> str:
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    return str(settings.work_dir)
