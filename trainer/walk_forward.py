"""Walk-forward (rolling-origin) evaluation: one training per fold, each scored on later days.

A fold trains on everything before its validation block, calibrates on that block and is
tested on the block after it, through the served path. The blocks are dates, shared by
every ticker of a pooled training; a ticker whose history is too short for a fold's
training range sits that fold out (``membership`` says which and why). Consecutive folds test consecutive
blocks, so the pooled test days are a long out-of-sample record of the recipe, while every
single forecast in it was made by a model that had not seen its day. The last fold's model
is the one a training run ships.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.loggers import Logger

from services.core.forecaster import ForecastModel, Forecasts
from services.core.model_card import ModelCard, TickerFit
from services.core.quantiles import Calibration, to_prices, to_return_quantiles
from services.core.windows import Windows
from trainer.data import MIN_TRAIN_SAMPLES, DataError, PriceDataModule
from trainer.evaluate import fit_calibration
from trainer.export import write_served_model
from trainer.fit import fit
from trainer.settings import TrainSettings


def _module(prices: Mapping[str, pd.DataFrame], settings: TrainSettings, test_start, test_days):
    dm = PriceDataModule(
        prices,
        settings.window,
        settings.val_days,
        test_days,
        test_start,
        settings.batch_size,
        settings.seed,
    )
    dm.setup()  # too little data fails here, before any training
    return dm


def trailing_folds(
    prices: Mapping[str, pd.DataFrame], settings: TrainSettings
) -> list[PriceDataModule]:
    """``settings.folds`` consecutive test blocks of ``test_days`` target dates, the last one
    where a single training would test (the last days, or from ``test_start``), oldest
    first. The blocks are dates on every ticker's calendar, shared by all of them."""
    last = _module(prices, settings, settings.test_start, settings.test_days)
    known = last.calendar()
    first_test = int(known.get_loc(last.splits.test[0]))
    earliest = first_test - (settings.folds - 1) * settings.test_days
    if earliest - settings.val_days < MIN_TRAIN_SAMPLES:
        raise DataError(
            f"{last.subject}: {settings.folds} folds of {settings.test_days} test days, after "
            f"{settings.val_days} validation and at least {MIN_TRAIN_SAMPLES} training samples, "
            f"need {MIN_TRAIN_SAMPLES + settings.val_days + first_test - earliest} samples before "
            f"{last.splits.test[0]:%Y-%m-%d}; there are {first_test} "
            "(use fewer --folds, smaller --test-days or a longer history)"
        )
    earlier = [
        _module(prices, settings, known[earliest + k * settings.test_days], settings.test_days)
        for k in range(settings.folds - 1)
    ]
    return [*earlier, last]


def yearly_folds(
    prices: Mapping[str, pd.DataFrame], settings: TrainSettings, years: list[int]
) -> list[PriceDataModule]:
    """One fold per calendar year: its targets are the test, the year's worth before validates.
    DataError names a year the prices do not reach or cannot train for."""
    probe = PriceDataModule(prices, settings.window)
    known = probe.calendar()
    folds = []
    for year in years:
        in_year = known[known.year == year]
        if not len(in_year):
            raise DataError(
                f"{probe.subject}: no target day in {year}; the prices have targets from "
                f"{known[0]:%Y-%m-%d} to {known[-1]:%Y-%m-%d}"
            )
        folds.append(_module(prices, settings, in_year[0], len(in_year)))
    return folds


def membership(folds: list[PriceDataModule]) -> dict[str, list[str]]:
    """Each ticker left out of some fold, with the reason in each: who trained on less."""
    gaps: dict[str, list[str]] = {}
    for number, dm in enumerate(folds, 1):
        for ticker, why in dm.left_out.items():
            gaps.setdefault(ticker, []).append(
                f"fold {number} (test from {dm.splits.test[0]:%Y-%m-%d}): {why}"
            )
    return gaps


@dataclass(frozen=True)
class FoldRun:
    """One fold's trained model, as served, and each of its tickers' test forecasts."""

    dm: PriceDataModule
    card: ModelCard  # the model's own fields; the run's (lineage, metrics) come later
    folder: Path  # the served model: ONNX graph, scalers and card
    served: ForecastModel  # the folder, loaded
    forecasts: dict[str, Forecasts]  # by ticker: the test days, through the served path
    unshrunk: dict[str, np.ndarray]  # the same, without the median's shrinkage towards naive
    checkpoint_path: str
    fit_seconds: float

    @property
    def label(self) -> str:
        return f"{self.dm.splits.test[0]:%Y-%m-%d}"


def calibrate(
    net: torch.nn.Module, dm: PriceDataModule, level: float, scope: str
) -> dict[str, Calibration]:
    """Each ticker's calibration, fitted on its validation block: on every ticker's days
    together (``pooled``), or on its own (``per-ticker``)."""
    val = {t: dm.subset("val", t) for t in dm.tickers}
    with torch.no_grad():
        raw = {t: net(torch.from_numpy(v.x)).numpy() for t, v in val.items()}
    if scope == "per-ticker":
        return {
            t: fit_calibration(raw[t], v.y, v.last_close, v.volatility, level)
            for t, v in val.items()
        }
    groups = np.concatenate([[n] * len(v.y) for n, v in enumerate(val.values())])
    every = Windows.concatenate(list(val.values()))
    joint = fit_calibration(
        np.concatenate(list(raw.values())),
        every.y,
        every.last_close,
        every.volatility,
        level,
        groups,
    )
    return dict.fromkeys(dm.tickers, joint)


def train_fold(
    settings: TrainSettings, dm: PriceDataModule, scratch: Path, logger: Logger | bool
) -> FoldRun:
    """Fit, calibrate on validation, export, and forecast the test block as it would be served."""
    L.seed_everything(settings.seed, workers=True, verbose=False)  # each fold on its own
    scratch.mkdir(parents=True, exist_ok=True)
    best, checkpoint, epochs, fit_seconds = fit(settings, dm, scratch, logger)
    level = settings.quantiles[-1] - settings.quantiles[0]
    # The widening adapts from the first forecast after validation: its anchor is the last
    # validation target day.
    adapts = {"step": settings.adaptive_step, "since": f"{dm.splits.val[1]:%Y-%m-%d}"}
    calibrations = {
        t: replace(c, **adapts)
        for t, c in calibrate(best.net, dm, level, settings.calibration).items()
    }

    folder = scratch / "model"
    tests = {t: dm.subset("test", t) for t in dm.tickers}
    sample = np.concatenate([w.x for w in tests.values()])
    parity = write_served_model(
        folder, best.net, sample, {t: s.scaler for t, s in dm.series.items()}
    )
    card = ModelCard(
        window=settings.window,
        quantiles=tuple(settings.quantiles),
        tickers={t: TickerFit(calibration=c) for t, c in calibrations.items()},
        splits=dm.splits.to_params(),
        epochs=epochs,
        best_epoch_val_loss=float(checkpoint.best_model_score),
        onnx_max_abs_diff=parity,
    )
    served = ForecastModel(folder, card)
    forecasts, unshrunk = {}, {}
    for ticker, test in tests.items():
        if not len(test.y):
            continue  # its history ends before this block
        model = served.for_ticker(ticker)
        raw = model.raw(test.x)
        unshrunk_median = replace(model.calibration, shrink=1.0)
        widen = model.widening(test, raw)[:-1]
        returns = to_return_quantiles(raw, test.volatility, unshrunk_median, widen)
        unshrunk[ticker] = to_prices(test.last_close, returns)
        forecasts[ticker] = model.forecast_windows(test)
    return FoldRun(
        dm,
        card,
        folder,
        served,
        forecasts,
        unshrunk,
        checkpoint.best_model_path,
        fit_seconds,
    )


@dataclass(frozen=True)
class Evidence:
    """One ticker's walk-forward record: every fold's test forecasts, oldest first."""

    forecasts: Forecasts
    unshrunk: np.ndarray  # the same quantiles without the median's shrinkage
    folds: np.ndarray  # each day's fold label


def pooled(runs: list[FoldRun]) -> dict[str, Evidence]:
    """Each ticker's test forecasts over the folds it joined, as one record."""
    evidence = {}
    for ticker in runs[-1].forecasts:
        parts = [r for r in runs if ticker in r.forecasts]
        f = [r.forecasts[ticker] for r in parts]
        evidence[ticker] = Evidence(
            Forecasts(
                anchor_dates=pd.DatetimeIndex(np.concatenate([x.anchor_dates for x in f])),
                last_close=np.concatenate([x.last_close for x in f]),
                prices=np.concatenate([x.prices for x in f]),
                actual=np.concatenate([x.actual for x in f]),
            ),
            np.concatenate([r.unshrunk[ticker] for r in parts]),
            np.concatenate([[r.label] * len(r.forecasts[ticker].anchor_dates) for r in parts]),
        )
    return evidence
