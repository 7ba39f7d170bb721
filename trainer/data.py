"""Prices of one ticker or many -> scaled windows, split by target date on one calendar.

Every ticker of a training shares the same three date ranges (train, validation, test), so
no training window of any ticker has its target inside the validation or test block. Each
ticker keeps its own scaler, fitted on its own training rows, and its own volatility unit:
the features are unit-free, so one network can read every stock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from services.core.features import WARMUP, features_and_unit
from services.core.windows import Scaler, Windows
from trainer.errors import DataError
from trainer.splits import MIN_TRAIN_SAMPLES, Splits, split_by_date, target_dates

__all__ = [
    "MIN_TRAIN_SAMPLES",
    "DataError",
    "PriceDataModule",
    "Splits",
    "TickerSeries",
    "target_dates",
]


@dataclass(frozen=True)
class TickerSeries:
    """One ticker's windows in one fold, kept as its scaled feature rows: window i is rows
    i to i + window - 1, so no window is stored twice. Targets are next-day log returns."""

    ticker: str
    scaler: Scaler
    rows: np.ndarray  # (rows, features), scaled, float32
    window: int
    anchor_dates: pd.DatetimeIndex  # the last day of each window
    targets: pd.DatetimeIndex  # the day each window forecasts; NaT for the live one
    y: np.ndarray  # next-day log return; NaN for the live one
    last_close: np.ndarray
    volatility: np.ndarray  # the volatility unit on the anchor day: the target's unit
    center: float  # the median training target, in units of volatility

    def windows(self, keep: np.ndarray) -> Windows:
        starts = np.flatnonzero(keep)
        x = self.rows[starts[:, None] + np.arange(self.window)]
        return Windows(
            x, self.y[keep], self.anchor_dates[keep], self.last_close[keep], self.volatility[keep]
        )


def ticker_series(
    ticker: str, prices: pd.DataFrame, window: int, splits: Splits
) -> TickerSeries | str:
    """The ticker's series for ``splits``, or why it cannot join them."""
    columns = (prices[c].to_numpy(dtype="float64") for c in ("Open", "High", "Low", "Close"))
    open_, high, low, close = columns
    matrix, unit = features_and_unit(open_, high, low, close, prices["Volume"].to_numpy(float))
    first = WARMUP + window - 1  # the first anchor's position among the bars
    anchors = prices.index[first:]
    targets = target_dates(prices, anchors)
    trained = splits.holds("train", targets)
    if trained.sum() < MIN_TRAIN_SAMPLES:
        return (
            f"{int(trained.sum())} training samples before {splits.val[0]:%Y-%m-%d}, "
            f"{MIN_TRAIN_SAMPLES} needed"
        )
    features = pd.DataFrame(matrix[WARMUP:], index=prices.index[WARMUP:])
    scaler = Scaler.fit(features, through=splits.train[1])
    y = np.r_[np.log(close[1:] / close[:-1]), np.nan][first:]
    volatility = unit[first:]
    return TickerSeries(
        ticker=ticker,
        scaler=scaler,
        rows=scaler.transform(features.to_numpy()),
        window=window,
        anchor_dates=anchors,
        targets=targets,
        y=y,
        last_close=close[first:],
        volatility=volatility,
        center=float(np.median(y[trained] / volatility[trained])),
    )


class WindowDataset(Dataset):
    """Training samples of several tickers, each window gathered from its rows by the batch."""

    def __init__(self, parts: list[tuple[TickerSeries, np.ndarray]], window: int):
        offsets = np.cumsum([0] + [len(series.rows) for series, _ in parts])[:-1]
        self.rows = torch.from_numpy(np.concatenate([series.rows for series, _ in parts]))
        self.starts = torch.from_numpy(
            np.concatenate(
                [
                    offset + np.flatnonzero(keep)
                    for (_, keep), offset in zip(parts, offsets, strict=True)
                ]
            )
        )
        # Centred on each ticker's typical training day: the network learns how tomorrow
        # deviates from it, not the drift of the training years, which tomorrow does not inherit.
        self.targets = torch.from_numpy(
            np.concatenate(
                [
                    (s.y[keep] / s.volatility[keep] - s.center).astype(np.float32)
                    for s, keep in parts
                ]
            )
        )
        self.steps = torch.arange(window)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.as_tensor(indices)
        return self.rows[self.starts[chosen][:, None] + self.steps], self.targets[chosen]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]


def _batch(samples):
    return samples  # WindowDataset.__getitems__ has stacked the batch already


class PriceDataModule(L.LightningDataModule):
    """Windows of scaled features with next-day log-return targets, of every ticker that
    has the history for these splits.

    The splits are dates on the calendar of every ticker's target days (one ticker's own,
    when there is one). A ticker whose history does not fill the training range is left
    out, and ``left_out`` says why. Each scaler is fitted on its ticker's rows dated up to
    the last training target only, so no validation or test value shapes the inputs.
    Targets are in units of the anchor day's volatility unit; forecasts add nothing back.
    """

    def __init__(
        self,
        prices: Mapping[str, pd.DataFrame],
        window: int = 60,
        val_days: int = 252,
        test_days: int = 252,
        test_start: date | None = None,
        batch_size: int = 64,
        seed: int = 42,
    ):
        super().__init__()
        self.prices = dict(prices)
        self.window, self.val_days, self.test_days, self.test_start = (
            window,
            val_days,
            test_days,
            test_start,
        )
        self.batch_size, self.seed = batch_size, seed
        self.splits: Splits | None = None
        self.series: dict[str, TickerSeries] = {}
        self.left_out: dict[str, str] = {}

    @property
    def subject(self) -> str:
        tickers = list(self.prices)
        return tickers[0] if len(tickers) == 1 else f"{len(tickers)} tickers"

    @property
    def tickers(self) -> list[str]:
        """The tickers that joined these splits, in the order they were given."""
        return list(self.series)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        bars_needed = self.window + WARMUP + 1
        short = {t: len(p) for t, p in self.prices.items() if len(p) < bars_needed}
        if short:
            listed = ", ".join(f"{t} has {n}" for t, n in short.items())
            raise DataError(f"one window needs {bars_needed} bars; {listed}")
        self.splits = split_by_date(
            self.calendar(), self.val_days, self.test_days, self.test_start, self.subject
        )
        for ticker, prices in self.prices.items():
            series = ticker_series(ticker, prices, self.window, self.splits)
            if isinstance(series, str):
                self.left_out[ticker] = series
            else:
                self.series[ticker] = series
        if not self.series:
            raise DataError(
                f"{self.subject}: no ticker has {MIN_TRAIN_SAMPLES} training samples before "
                f"{self.splits.val[0]:%Y-%m-%d}"
            )

    def calendar(self) -> pd.DatetimeIndex:
        """Every date some ticker's window has as its known target, in order."""
        first = WARMUP + self.window - 1
        dates = [p.index[first + 1 :] for p in self.prices.values()]
        return pd.DatetimeIndex(np.unique(np.concatenate(dates)))

    def mask(self, split: str, ticker: str) -> np.ndarray:
        return self.splits.holds(split, self.series[ticker].targets)

    def subset(self, split: str, ticker: str | None = None) -> Windows:
        """One ticker's windows in ``split``, or every ticker's, one after the other."""
        tickers = [ticker] if ticker else self.tickers
        parts = [self.series[t].windows(self.mask(split, t)) for t in tickers]
        return parts[0] if len(parts) == 1 else Windows.concatenate(parts)

    def _dataset(self, split: str) -> WindowDataset:
        parts = [(s, self.mask(split, t)) for t, s in self.series.items()]
        return WindowDataset(parts, self.window)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self._dataset("train"),
            self.batch_size,
            shuffle=True,
            generator=generator,
            collate_fn=_batch,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self._dataset("val"), self.batch_size * 4, shuffle=False, collate_fn=_batch
        )

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            self._dataset("test"), self.batch_size * 4, shuffle=False, collate_fn=_batch
        )
