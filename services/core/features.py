"""Features and the volatility unit, shared by the trainer and the predictor (windows.py
makes them the network's samples).

Numpy only, so the predictor computes exactly what the trainer computed, without torch.

Each trading day t gets a feature row built from bars up to t; a sample is the window of
the last ``window`` rows and its target is the next day's log return of the quoted close,
in units of the day's volatility: the network learns the shape of tomorrow's return in
calm and stormy months alike, and the current volatility sets its scale
(``services.core.quantiles`` turns the network's outputs back into prices).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES: tuple[str, ...] = (
    "log_return",
    "log_range",
    "log_body",
    "log_volume_ratio",
    "range_variance_1d",
    "range_variance_5d",
    "range_variance_22d",
    "return_variance_5d",
)
TARGET = "next_log_return"
TARGET_SCALING = "range_blend_ewma_0.94_60d"
LOOKBACK = 22  # days behind the volume ratio and the longest range variance
UNIT_DECAY, UNIT_DAYS = 0.94, 60  # RiskMetrics' decay, cut at a window of 60 days
WARMUP = UNIT_DAYS  # rows consumed before the first complete feature row
MIN_VOLATILITY = 1e-4  # a frozen quote has zero realised volatility; never divide by it


def _trailing_mean(values: np.ndarray, days: int) -> np.ndarray:
    """Each day's mean of its last ``days`` values; NaN while there are fewer."""
    means = np.full(len(values), np.nan)
    if len(values) >= days:
        # Each window summed on its own (not a running sum): exact however long the history.
        means[days - 1 :] = np.convolve(values, np.ones(days), mode="valid") / days
    return means


def _after_first(values: np.ndarray) -> np.ndarray:
    """A day-to-day series as long as the days: undefined on the first."""
    return np.concatenate(([np.nan], values))


def feature_matrix(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> np.ndarray:
    """One row of ``FEATURES`` per day, from that day's bar and the days before it."""
    return features_and_unit(open_, high, low, close, volume)[0]


def features_and_unit(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``feature_matrix`` and ``volatility_unit`` of the same bars, sharing their parts.

    - log_return: log(Close_t / Close_t-1), the quantity being forecast;
    - log_range: log(High / Low), the day's intraday volatility;
    - log_body: log(Close / Open), where the day closed within its range;
    - log_volume_ratio: log(Volume / mean of the previous 22 days), unusual activity;
    - range_variance_1d, _5d, _22d: the mean of ``day_variance`` over the last 1, 5 and 22
      days, and return_variance_5d: the mean squared return of the last 5 days; each as
      the log of its ratio to the squared volatility unit, so the network sees whether
      variance is rising or falling against the unit its target is measured in.
    The first ``WARMUP`` rows lack a full history. The training frames and a request's bars
    both come through here, so the two compute the very same numbers.
    """
    previous_mean = _after_first(_trailing_mean(volume, LOOKBACK)[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(volume / previous_mean)
    # Zero or stale volume gives -inf or NaN: bounded, and neutral when undefined.
    ratio[np.isnan(ratio)] = 0.0
    returns = _after_first(np.diff(np.log(close)))
    day = day_variance(open_, high, low, close)
    unit = _unit(returns, day)
    day = np.maximum(day, MIN_VOLATILITY**2)
    squared = np.maximum(returns**2, MIN_VOLATILITY**2)
    variance = unit**2
    features = np.column_stack(
        [
            returns,
            np.log(high / low),
            np.log(close / open_),
            np.clip(ratio, -5.0, 5.0),
            _relative(day, variance),
            _relative(_trailing_mean(day, 5), variance),
            _relative(_trailing_mean(day, 22), variance),
            _relative(_trailing_mean(squared, 5), variance),
        ]
    )
    return features, unit


def _relative(variance: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """log(variance / unit), bounded: a frozen quote must not give an unbounded input."""
    return np.clip(np.log(variance / unit), -6.0, 6.0)


def day_variance(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> np.ndarray:
    """A day's return variance from its bar: the overnight gap squared plus Garman-Klass's
    estimate from the range and the body (several times more efficient than the squared
    close-to-close return); undefined on the first day, which has no gap."""
    gap = _after_first(np.log(open_[1:] / close[:-1]))
    range_, body = np.log(high / low), np.log(close / open_)
    garman_klass = np.maximum(0.5 * range_**2 - (2 * np.log(2) - 1) * body**2, 0.0)
    return gap**2 + garman_klass


def price_columns(prices: pd.DataFrame) -> list[np.ndarray]:
    return [prices[c].to_numpy(dtype="float64") for c in ("Open", "High", "Low", "Close", "Volume")]


def feature_frame(prices: pd.DataFrame) -> pd.DataFrame:
    """``feature_matrix`` of a price frame, by date, without the warm-up rows."""
    matrix = feature_matrix(*price_columns(prices))
    return pd.DataFrame(matrix[WARMUP:], index=prices.index[WARMUP:], columns=list(FEATURES))


def volatility_unit(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> np.ndarray:
    """Each day's volatility estimate, known at its close: the unit of the target.

    The variance is an exponentially weighted mean (RiskMetrics' decay, 0.94) of the
    squared close-to-close return and ``day_variance``, blended half and half: the range
    makes the estimate less noisy than returns alone, the returns keep it honest on days
    the range misses. The weights are cut at 60 days (0.94^60 < 3 %), so the value depends
    only on the bars a forecast needs and serving from the last bars agrees exactly with
    evaluating over the whole history.
    """
    return _unit(_after_first(np.diff(np.log(close))), day_variance(open_, high, low, close))


def _unit(returns: np.ndarray, day: np.ndarray) -> np.ndarray:
    blend = 0.5 * returns**2 + 0.5 * day
    weights = UNIT_DECAY ** np.arange(UNIT_DAYS)  # the latest day first
    variance = np.full(len(blend), np.nan)
    if len(blend) >= UNIT_DAYS:
        # convolve flips the weights: each window's last day meets weight 1
        variance[UNIT_DAYS - 1 :] = np.convolve(blend, weights, mode="valid") / weights.sum()
    return np.maximum(np.sqrt(variance), MIN_VOLATILITY)
