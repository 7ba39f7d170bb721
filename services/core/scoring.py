"""How forecasts of the next close are scored against the naive one, "tomorrow = today",
on the same days: the one formula the test metrics, the champion gate and the predictor's
realized errors all use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
