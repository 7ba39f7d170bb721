"""How forecasts of the next close are scored against the naive one, "tomorrow = today",
on the same days: the one formula the test window, the champion gate and the predictor's
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
