"""What a training run records besides its artifacts: each ticker's metrics and each fold's,
the shipped model's card completed with what the whole run knows, and each ticker's
registered version with its gate's decision."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

from services.core.model_card import ModelCard
from services.core.naming import registered_model_name
from trainer.evaluate import evaluate
from trainer.inputs import Lineage
from trainer.registry import Champions, Decision, decide, ensure_registered, register
from trainer.settings import TrainSettings
from trainer.walk_forward import Evidence, FoldRun


@dataclass
class Registered:
    """What came of one ticker's version."""

    model_name: str
    version: str
    decision: Decision


def metric_key(ticker: str, key: str, tickers: list[str]) -> str:
    """A one-ticker run names its metrics and tags plainly; a pooled run prefixes each
    ticker's with the ticker (without '^', which MLflow keys do not take)."""
    return key if len(tickers) == 1 else f"{ticker.replace('^', '')}/{key}"


def log_metrics(rows, folds: list[FoldRun], tickers: list[str]) -> None:
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
        calibration = shipped.tickers[ticker].calibration.fitted()
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
            calibration = fold.card.tickers[ticker].calibration.fitted()
            history |= {
                metric_key(ticker, f"fold_calibration_{k}", tickers): v
                for k, v in calibration.items()
            }
        mlflow.log_metrics(history, step=step)


def complete_card(
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


def register_versions(
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
