"""The rules daily bars must pass, on numpy arrays: each defined once, with the words that
report it.

Whole price frames (ingestion, training: ``prices.validate_prices``) and the bars of a
forecast request (the predictor) are both checked here, so a rule and its message cannot
drift apart between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Yahoo's own history has bars whose High or Low misses Open/Close by up to 2.75 %
# (35 of 12,500 PETR4 and VALE3 bars, 2001-2014). Such slips are reported; larger
# ones mean a corrupted row and are refused.
OHLC_TOLERANCE = 0.03
SHOWN_DATES = 5


class PriceValidationError(ValueError):
    """Bars broke one or more rules; ``problems`` has one line per rule."""

    def __init__(self, subject: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{subject}: " + "; ".join(problems))


@dataclass(frozen=True)
class Bars:
    """Daily bars as arrays of one length: the days and each column, float64."""

    days: np.ndarray  # datetime64[D]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    adj_close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_frame(cls, frame) -> Bars:
        """The columns of a price frame indexed by trading date."""
        columns = ("Open", "High", "Low", "Close", "Adj Close", "Volume")
        index = frame.index if frame.index.tz is None else frame.index.tz_localize(None)
        days = index.to_numpy().astype("datetime64[D]")
        return cls(days, *(frame[c].to_numpy(dtype="float64") for c in columns))

    def __len__(self) -> int:
        return len(self.days)

    def take(self, keep: np.ndarray | slice) -> Bars:
        return Bars(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))


def listed(days: np.ndarray, mask: np.ndarray) -> str:
    """The first few days where ``mask`` holds, and how many more."""
    chosen = days[mask]
    shown = ", ".join(np.datetime_as_string(chosen[:SHOWN_DATES], unit="D"))
    more = len(chosen) - SHOWN_DATES
    return shown + (f" (+{more} more)" if more > 0 else "")


def order_problems(days: np.ndarray) -> list[str]:
    """Dates must be unique and sorted."""
    unique, counts = np.unique(days, return_counts=True)
    if (counts > 1).any():
        return [f"duplicated dates {listed(days, np.isin(days, unique[counts > 1]))}"]
    backwards = np.r_[False, np.diff(days) < np.timedelta64(0, "D")]
    if backwards.any():
        return [f"dates not sorted: {listed(days, backwards)} comes after a later date"]
    return []


def value_problems(bars: Bars, tolerance: float = OHLC_TOLERANCE) -> tuple[list[str], np.ndarray]:
    """Every broken value rule, worded with its dates; and the days whose High or Low misses
    the body by less than ``tolerance`` (kept as they are, reported)."""
    o, h, lo, c, a, v = bars.open, bars.high, bars.low, bars.close, bars.adj_close, bars.volume
    problems = []
    non_finite = ~(
        np.isfinite(o)
        & np.isfinite(h)
        & np.isfinite(lo)
        & np.isfinite(c)
        & np.isfinite(a)
        & np.isfinite(v)
    )
    if non_finite.any():
        problems.append(f"NaN or infinite values on {listed(bars.days, non_finite)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        not_positive = ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0) | (a <= 0)) & ~non_finite
        if not_positive.any():
            problems.append(f"zero or negative prices on {listed(bars.days, not_positive)}")
        negative_volume = v < 0
        if negative_volume.any():
            problems.append(f"negative volume on {listed(bars.days, negative_volume)}")
        # fmax and fmin pass over a NaN, as a frame's max and min do.
        high_miss = np.fmax(o, c) / h - 1  # > 0: High below the body
        low_miss = 1 - np.fmin(o, c) / lo  # > 0: Low above the body
        high_below = high_miss > tolerance
        if high_below.any():
            problems.append(f"High below max(Open, Close) on {listed(bars.days, high_below)}")
        low_above = low_miss > tolerance
        if low_above.any():
            problems.append(f"Low above min(Open, Close) on {listed(bars.days, low_above)}")
        slips = ((high_miss > 1e-6) | (low_miss > 1e-6)) & ~high_below & ~low_above
    return problems, slips


def trading_days(bars: Bars, subject: str) -> Bars:
    """The days with volume: zero volume means a holiday or a stale quote."""
    traded = bars.take(bars.volume > 0)
    if len(traded) == 0:
        raise PriceValidationError(subject, ["every row has zero volume (no trading day left)"])
    return traded
