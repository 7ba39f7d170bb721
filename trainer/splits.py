"""The three date ranges of a training (train, validation, test), on the calendar of every
ticker it trains: a window belongs to the range its target day falls in, so no training
window of any ticker forecasts a day of the validation or test block."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from trainer.errors import DataError

MIN_TRAIN_SAMPLES = 100


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

    def holds(self, split: str, targets: pd.DatetimeIndex) -> np.ndarray:
        """Which of ``targets`` fall in ``split``."""
        first, last = getattr(self, split)
        return np.asarray((targets >= first) & (targets <= last))


def target_dates(prices: pd.DataFrame, anchors: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The trading day after each anchor (NaT after the last bar)."""
    position = prices.index.get_indexer(anchors) + 1
    known = position < len(prices)
    dates = np.full(len(anchors), np.datetime64("NaT"), dtype="datetime64[ns]")
    dates[known] = prices.index[position[known]]
    return pd.DatetimeIndex(dates)


def split_by_date(
    calendar: pd.DatetimeIndex, val_days: int, test_days: int, test_start: date | None, subject: str
) -> Splits:
    """Test = the last ``test_days`` target dates of ``calendar`` (or those from
    ``test_start``), validation the ``val_days`` before, training everything earlier."""
    if test_start is not None:
        test_first = int(np.searchsorted(calendar, pd.Timestamp(test_start)))
        test_last = min(test_first + test_days, len(calendar)) - 1
    else:
        test_first, test_last = len(calendar) - test_days, len(calendar) - 1
    val_first = test_first - val_days
    if val_first < MIN_TRAIN_SAMPLES or test_last < test_first:
        raise DataError(
            f"{subject}: {len(calendar)} samples with a known target; {test_days} test, {val_days} "
            f"validation and at least {MIN_TRAIN_SAMPLES} training samples are needed "
            + (f"before {pd.Timestamp(test_start):%Y-%m-%d} " if test_start else "")
            + "(use a longer history or smaller --val-days/--test-days)"
        )
    return Splits(
        train=(calendar[0], calendar[val_first - 1]),
        val=(calendar[val_first], calendar[test_first - 1]),
        test=(calendar[test_first], calendar[test_last]),
    )
