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
from pathlib import Path

import mlflow
import torch
from lightning.pytorch.loggers import MLFlowLogger
from mlflow import MlflowClient

from services.core.snapshots import SnapshotStore
from trainer import stopping
from trainer.data import DataError
from trainer.evaluate import evaluate
from trainer.inputs import Lineage, dataset_inputs, load_prices, run_params
from trainer.record import Registered, complete_card, log_metrics, register_versions
from trainer.report import write_reports
from trainer.settings import TrainSettings
from trainer.walk_forward import FoldRun, membership, pooled, trailing_folds, train_fold

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, dict[str, dict[str, float]]]  # by ticker, then forecaster
    summary: str
    registered: dict[str, Registered] = field(default_factory=dict)  # by ticker
    timings: dict[str, float] = field(default_factory=dict)


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


@dataclass
class Plan:
    """What a run trains on, settled before the run exists."""

    prices: dict
    lineages: dict[str, Lineage]
    folds: list
    sat_out: dict[str, list[str]]
    params: dict

    @property
    def tickers(self) -> list[str]:
        return list(self.prices)

    @property
    def synthetic(self) -> bool:
        return any(lineage.synthetic for lineage in self.lineages.values())


def train(settings: TrainSettings, client: MlflowClient | None = None) -> TrainResult:
    client = client or MlflowClient()
    started = time.perf_counter()
    torch.set_num_threads(settings.threads)
    plan = _plan(settings, client)  # a data problem fails here, before any run exists
    mlflow.set_experiment(settings.experiment)
    subject = plan.tickers[0] if len(plan.tickers) == 1 else f"{len(plan.tickers)} tickers"
    with (
        mlflow.start_run(run_name=f"{subject} {plan.params['data_last_date']}") as run,
        tempfile.TemporaryDirectory(dir=_scratch(settings)) as scratch,
    ):
        _open(plan)
        runs = _fit_folds(settings, plan.folds, run.info.run_id, Path(scratch))
        evidence, rows = _score(settings, plan, runs)
        card, summary = _log_outputs(settings, plan, runs, evidence, rows, Path(scratch))
        fit_seconds = sum(r.fit_seconds for r in runs)
        result = TrainResult(run.info.run_id, rows, summary, timings={"fit_seconds": fit_seconds})
        if settings.register_model:  # last: a run that dies before here registers nothing
            stopping.registering()
            result.registered = register_versions(
                client, settings, run, card, evidence, plan.prices
            )
    result.timings["total_seconds"] = time.perf_counter() - started
    log.info("training run %s took %.1f s", result.run_id, result.timings["total_seconds"])
    return result


def _plan(settings: TrainSettings, client: MlflowClient) -> Plan:
    """The prices, their lineage and the walk-forward folds; every data problem is found here."""
    prices, lineages = load_prices(settings, SnapshotStore(client, settings.prices_experiment))
    folds = trailing_folds(prices, settings)
    _shipped_covers_all(folds, list(prices))
    sat_out = membership(folds)
    for ticker, why in sat_out.items():
        log.warning("%s sits out %s", ticker, "; ".join(why))
    return Plan(prices, lineages, folds, sat_out, run_params(settings, prices, lineages, folds))


def _open(plan: Plan) -> None:
    """The run's tags, parameters and data lineage, logged first."""
    tickers = plan.tickers
    tags = {"tickers": ",".join(tickers), "synthetic": str(plan.synthetic).lower()}
    mlflow.set_tags(tags | ({"ticker": tickers[0]} if len(tickers) == 1 else {}))
    mlflow.log_params(plan.params)
    dataset_inputs(plan.prices, plan.lineages)


def _fit_folds(settings: TrainSettings, folds, run_id: str, scratch: Path) -> list[FoldRun]:
    """One network per fold, in order; the last one's losses are the run's own, unprefixed."""
    runs = []
    for number, dm in enumerate(folds, 1):
        shipped = number == len(folds)
        logger = MLFlowLogger(
            run_id=run_id,
            tracking_uri=mlflow.get_tracking_uri(),
            prefix="" if shipped else f"fold{number}",
        )
        runs.append(train_fold(settings, dm, scratch / f"fold{number}", logger))
        log.info("fold %d/%d (test from %s) trained", number, len(folds), runs[-1].label)
    return runs


def _score(settings: TrainSettings, plan: Plan, runs: list[FoldRun]):
    """Each ticker's evidence (its test forecasts over the folds) and its metrics from it."""
    evidence = pooled(runs)
    rows = {
        t: evaluate(
            plan.prices[t],
            e.forecasts.anchor_dates,
            e.forecasts.actual,
            {"lstm": e.forecasts.prices, "lstm, unshrunk": e.unshrunk},
            settings.quantiles,
        )
        for t, e in evidence.items()
    }
    return evidence, rows


def _log_outputs(settings, plan: Plan, runs, evidence, rows, scratch: Path):
    """The model card, the metrics, the reports and the artifacts; the card and the report's
    summary back."""
    model = runs[-1]
    card = complete_card(
        model.card, mlflow.active_run().info.run_id, runs, plan.prices, plan.lineages, rows
    )
    card.write(model.folder)
    log_metrics(rows, runs, plan.tickers)
    first, last = runs[0].dm.splits.test[0], model.dm.splits.test[1]
    title = f"{len(runs)} walk-forward folds, tests {first:%Y-%m-%d} to {last:%Y-%m-%d}" + (
        " (SYNTHETIC data)" if plan.synthetic else ""
    )
    summary = write_reports(
        scratch / "reports", evidence, plan.prices, rows, title, settings.quantiles, plan.sat_out
    )
    mlflow.log_artifacts(str(model.folder), "model")
    mlflow.log_artifact(model.checkpoint_path, "checkpoints")
    mlflow.log_artifacts(str(scratch / "reports"), "reports")
    return card, summary


def _scratch(settings: TrainSettings) -> str:
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    return str(settings.work_dir)
