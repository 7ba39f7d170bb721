"""How forecasts of the next close are scored, on the same days, against the naive one
("tomorrow = today") and against the classic interval (naive +- an EWMA(0.94) normal band):
the one set of formulas the test metrics, the champion gate, the benchmarks and the
predictor's live scores all use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EWMA_LAMBDA = 0.94  # RiskMetrics' daily decay


@dataclass(frozen=True)
class AgainstNaive:
    """Mean absolute errors in R$ on the same days, and the last day's."""

    days: int
    mae: float
    naive_mae: float
    last_error: float

    @property
    def ratio(self) -> float:
        """Below 1: better than tomorrow = today."""
        return self.mae / self.naive_mae


def against_naive(forecast: np.ndarray, actual: np.ndarray, last_close: np.ndarray) -> AgainstNaive:
    """``forecast`` and the naive forecast (``last_close``) scored on the closes they forecast."""
    errors = np.abs(np.asarray(forecast) - actual)
    naive = np.abs(np.asarray(last_close) - actual)
    return AgainstNaive(len(errors), float(errors.mean()), float(naive.mean()), float(errors[-1]))


def interval_scores(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, alpha: float
) -> np.ndarray:
    """Winkler's interval score of a central (1 - ``alpha``) interval, day by day, in R$:
    its width, plus 2 / alpha times how far the close fell outside it. Lower is better; a
    forecaster cannot improve it by misreporting its quantiles."""
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    return (upper - lower) + (2.0 / alpha) * (below + above)


def pinball_loss(actual: np.ndarray, quantiles: np.ndarray, levels) -> float:
    """The quantile (pinball) loss of (days, levels) price quantiles, averaged, in R$."""
    error = actual[:, None] - quantiles
    levels = np.asarray(levels)[None, :]
    return float(np.mean(np.maximum(levels * error, (levels - 1.0) * error)))


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """The share of closes inside their interval."""
    return float(np.mean((actual >= lower) & (actual <= upper)))


def ewma_sigma(close: pd.Series) -> pd.Series:
    """RiskMetrics' volatility of daily log returns, each day's known at its close."""
    returns = np.log(close).diff().fillna(0.0).to_numpy()
    variance = np.empty(len(returns))
    variance[0] = np.var(returns[1:31])  # a start; forgotten within weeks at lambda 0.94
    for t in range(1, len(returns)):
        variance[t] = EWMA_LAMBDA * variance[t - 1] + (1 - EWMA_LAMBDA) * returns[t] ** 2
    return pd.Series(np.sqrt(variance), index=close.index)


# The standard normal's 0.9 quantile: the classic central 80 % interval.
_Z_80 = 1.2815515655446004


def classic_interval(
    prices: pd.DataFrame, anchors: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray]:
    """The classic 80 % interval of each anchor's next close: the anchor's close times
    exp(+-z sigma), sigma the EWMA(0.94) volatility known at that close."""
    close = prices["Close"]
    sigma = ewma_sigma(close).reindex(anchors).to_numpy()
    today = close.reindex(anchors).to_numpy()
    return today * np.exp(-_Z_80 * sigma), today * np.exp(_Z_80 * sigma)


@dataclass(frozen=True)
class RealizedRecord:
    """A served model's record on days whose closes came after its training data: its
    median against naive's, and its 80 % interval against the classic one, in R$."""

    days: int
    mae: float
    naive_mae: float
    last_error: float
    coverage: float
    interval_score: float
    classic_interval_score: float


def realized_record(
    actual: np.ndarray,
    last_close: np.ndarray,
    quantiles: np.ndarray,
    classic: tuple[np.ndarray, np.ndarray],
    levels,
) -> RealizedRecord:
    """``quantiles`` (days, levels) of the next closes ``actual``, their outer two as the
    interval, scored beside naive's median and the ``classic`` interval on the same days."""
    median = quantiles[:, quantiles.shape[1] // 2]
    lower, upper = quantiles[:, 0], quantiles[:, -1]
    alpha = 1.0 - (levels[-1] - levels[0])
    point = against_naive(median, actual, last_close)
    return RealizedRecord(
        days=point.days,
        mae=point.mae,
        naive_mae=point.naive_mae,
        last_error=point.last_error,
        coverage=coverage(actual, lower, upper),
        interval_score=float(np.mean(interval_scores(actual, lower, upper, alpha))),
        classic_interval_score=float(np.mean(interval_scores(actual, *classic, alpha))),
    )
