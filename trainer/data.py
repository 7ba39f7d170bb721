"""Prices -> scaled windows, split chronologically by target date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from services.core.features import WARMUP, Scaler, Windows, feature_frame, make_windows

MIN_TRAIN_SAMPLES = 100


class DataError(ValueError):
    """The prices cannot support the requested window and splits."""


@dataclass(frozen=True)
class Splits:
    """Inclusive target-date ranges of the three splits."""

    train: tuple[pd.Timestamp, pd.Timestamp]
    val: tuple[pd.Timestamp, pd.Timestamp]
    test: tuple[pd.Timestamp, pd.Timestamp]

    def to_params(self) -> dict[str, str]:
        return {
            f"{name}_{edge}": day.strftime("%Y-%m-%d")
            for name in ("train", "val", "test")
            for edge, day in zip(("start", "end"), getattr(self, name), strict=True)
        }


def target_dates(prices: pd.DataFrame, anchors: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The trading day after each anchor (NaT after the last bar)."""
    position = prices.index.get_indexer(anchors) + 1
    known = position < len(prices)
    dates = np.full(len(anchors), np.datetime64("NaT"), dtype="datetime64[ns]")
    dates[known] = prices.index[position[known]]
    return pd.DatetimeIndex(dates)


def split_by_date(
    targets: pd.DatetimeIndex, val_days: int, test_days: int, test_start: date | None, subject: str
) -> Splits:
    """Test = the last ``test_days`` targets (or those from ``test_start``), validation the
    ``val_days`` before, training everything earlier."""
    known = targets[~targets.isna()]
    if test_start is not None:
        test_first = int(np.searchsorted(known, pd.Timestamp(test_start)))
        test_last = min(test_first + test_days, len(known)) - 1
    else:
        test_first, test_last = len(known) - test_days, len(known) - 1
    val_first = test_first - val_days
    if val_first < MIN_TRAIN_SAMPLES or test_last < test_first:
        raise DataError(
            f"{subject}: {len(known)} samples with a known target; {test_days} test, {val_days} "
            f"validation and at least {MIN_TRAIN_SAMPLES} training samples are needed "
            + (f"before {pd.Timestamp(test_start):%Y-%m-%d} " if test_start else "")
            + "(use a longer history or smaller --val-days/--test-days)"
        )
    return Splits(
        train=(known[0], known[val_first - 1]),
        val=(known[val_first], known[test_first - 1]),
        test=(known[test_first], known[test_last]),
    )


class PriceDataModule(L.LightningDataModule):
    """Windows of scaled features with next-day log-return targets.

    The scaler is fitted on the rows dated up to the last training target only, so no
    validation or test value shapes the inputs the model learns from. Targets are in
    units of the anchor day's volatility unit and centred on their training median:
    the network learns how tomorrow deviates from a typical day, not the drift of the
    training years, which the next day does not inherit. Forecasts add nothing back.
    """

    def __init__(
        self,
        prices: pd.DataFrame,
        window: int = 60,
        val_days: int = 252,
        test_days: int = 252,
        test_start: date | None = None,
        batch_size: int = 64,
        seed: int = 42,
        subject: str = "prices",
    ):
        super().__init__()
        self.prices = prices
        self.window, self.val_days, self.test_days, self.test_start = (
            window,
            val_days,
            test_days,
            test_start,
        )
        self.batch_size, self.seed, self.subject = batch_size, seed, subject
        self.scaler: Scaler | None = None
        self.splits: Splits | None = None
        self.windows: Windows | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.windows is not None:
            return
        bars_needed = self.window + WARMUP + 1
        if len(self.prices) < bars_needed:
            raise DataError(
                f"{self.subject}: {len(self.prices)} bars; one window needs {bars_needed}"
            )
        features = feature_frame(self.prices)
        anchors = features.index[self.window - 1 :]
        self.targets = target_dates(self.prices, anchors)
        self.splits = split_by_date(
            self.targets, self.val_days, self.test_days, self.test_start, self.subject
        )
        self.scaler = Scaler.fit(features, through=self.splits.train[1])
        self.windows = make_windows(self.prices, self.scaler, self.window)
        train = self.subset("train")
        self.target_center = float(np.median(train.y / train.volatility))

    def mask(self, split: str) -> np.ndarray:
        first, last = getattr(self.splits, split)
        return np.asarray((self.targets >= first) & (self.targets <= last))

    def subset(self, split: str) -> Windows:
        return self.windows.take(self.mask(split))

    def _dataset(self, split: str) -> TensorDataset:
        part = self.subset(split)
        y = part.y / part.volatility - self.target_center
        return TensorDataset(torch.from_numpy(part.x), torch.from_numpy(y.astype(np.float32)))

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self._dataset("train"), self.batch_size, shuffle=True, generator=generator
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("val"), self.batch_size * 4, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("test"), self.batch_size * 4, shuffle=False)
