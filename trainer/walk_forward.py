"""Walk-forward (rolling-origin) evaluation: one training per fold, each scored on later days.

A fold trains on everything before its validation block, calibrates on that block and is
tested on the block after it, through the served path. Consecutive folds test consecutive
blocks, so the pooled test days are a long out-of-sample record of the recipe, while every
single forecast in it was made by a model that had not seen its day. The last fold's model
is the one a training run ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.loggers import Logger

from services.core.forecaster import ForecastModel, Forecasts
from services.core.model_card import ModelCard
from services.core.quantiles import Calibration, to_prices, to_return_quantiles
from trainer.data import MIN_TRAIN_SAMPLES, DataError, PriceDataModule
from trainer.evaluate import fit_calibration
from trainer.export import write_served_model
from trainer.fit import fit
from trainer.settings import TrainSettings


def _module(prices: pd.DataFrame, settings: TrainSettings, test_start, test_days: int):
    dm = PriceDataModule(
        prices,
        settings.window,
        settings.val_days,
        test_days,
        test_start,
        settings.batch_size,
        settings.seed,
        settings.ticker,
    )
    dm.setup()  # too little data fails here, before any training
    return dm


def trailing_folds(prices: pd.DataFrame, settings: TrainSettings) -> list[PriceDataModule]:
    """``settings.folds`` consecutive test blocks of ``test_days`` targets, the last one where
    a single training would test (the last days, or from ``test_start``), oldest first."""
    last = _module(prices, settings, settings.test_start, settings.test_days)
    known = last.targets[~last.targets.isna()]
    first_test = int(known.get_loc(last.splits.test[0]))
    earliest = first_test - (settings.folds - 1) * settings.test_days
    if earliest - settings.val_days < MIN_TRAIN_SAMPLES:
        raise DataError(
            f"{settings.ticker}: {settings.folds} folds of {settings.test_days} test days, after "
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
    prices: pd.DataFrame, settings: TrainSettings, years: list[int]
) -> list[PriceDataModule]:
    """One fold per calendar year: its targets are the test, the year's worth before validates.
    DataError names a year the prices do not reach or cannot train for."""
    probe = _module(prices, settings, None, settings.test_days)
    known = probe.targets[~probe.targets.isna()]
    folds = []
    for year in years:
        in_year = known[known.year == year]
        if not len(in_year):
            raise DataError(
                f"{settings.ticker}: no target day in {year}; the prices have targets from "
                f"{known[0]:%Y-%m-%d} to {known[-1]:%Y-%m-%d}"
            )
        folds.append(_module(prices, settings, in_year[0], len(in_year)))
    return folds


@dataclass(frozen=True)
class FoldRun:
    """One fold's trained model, as served, and its test forecasts."""

    dm: PriceDataModule
    card: ModelCard  # the model's own fields; the run's (ticker, lineage, metrics) come later
    folder: Path  # the served model: ONNX graph, scaler and card
    served: ForecastModel  # the folder, loaded
    forecasts: Forecasts  # the test days, through the served path
    unshrunk: np.ndarray  # the same, without the median's shrinkage towards naive
    checkpoint_path: str
    fit_seconds: float

    @property
    def label(self) -> str:
        return f"{self.dm.splits.test[0]:%Y-%m-%d}"


def train_fold(
    settings: TrainSettings, dm: PriceDataModule, scratch: Path, logger: Logger | bool
) -> FoldRun:
    """Fit, calibrate on validation, export, and forecast the test block as it would be served."""
    L.seed_everything(settings.seed, workers=True, verbose=False)  # each fold on its own
    scratch.mkdir(parents=True, exist_ok=True)
    best, checkpoint, epochs, fit_seconds = fit(settings, dm, scratch, logger)
    val, test = dm.subset("val"), dm.subset("test")
    with torch.no_grad():
        raw_val = best.net(torch.from_numpy(val.x)).numpy()
    level = settings.quantiles[-1] - settings.quantiles[0]
    calibration = fit_calibration(raw_val, val.y, val.last_close, val.volatility, level)

    folder = scratch / "model"
    parity = write_served_model(folder, best.net, test.x, dm.scaler)
    card = ModelCard(
        window=settings.window,
        quantiles=tuple(settings.quantiles),
        calibration=calibration,
        splits=dm.splits.to_params(),
        epochs=epochs,
        best_epoch_val_loss=float(checkpoint.best_model_score),
        onnx_max_abs_diff=parity,
    )
    served = ForecastModel(folder, card)
    raw_test = served.raw(test.x)
    unshrunk = to_prices(
        test.last_close,
        to_return_quantiles(raw_test, test.volatility, Calibration(1.0, calibration.widen)),
    )
    return FoldRun(
        dm,
        card,
        folder,
        served,
        served.forecast_windows(test),
        unshrunk,
        checkpoint.best_model_path,
        fit_seconds,
    )


def pooled(runs: list[FoldRun]) -> tuple[Forecasts, np.ndarray, np.ndarray]:
    """Every fold's test forecasts as one record, oldest first: the forecasts, the unshrunk
    quantiles and each day's fold label."""
    forecasts = Forecasts(
        anchor_dates=pd.DatetimeIndex(np.concatenate([r.forecasts.anchor_dates for r in runs])),
        last_close=np.concatenate([r.forecasts.last_close for r in runs]),
        prices=np.concatenate([r.forecasts.prices for r in runs]),
        actual=np.concatenate([r.forecasts.actual for r in runs]),
    )
    labels = np.concatenate([[r.label] * len(r.forecasts.anchor_dates) for r in runs])
    return forecasts, np.concatenate([r.unshrunk for r in runs]), labels
