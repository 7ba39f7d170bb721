"""The forecast arithmetic: the network's outputs become calibrated quantiles and prices.

Outputs are sorted quantiles of tomorrow's log return in units of the day's volatility;
they become log returns by that volatility and prices as ``last close x exp(return)``, so
a drift in the price level cannot break the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """Post-hoc corrections fitted on the validation split, applied to every forecast.

    ``shrink`` scales the median return towards zero (0 is the naive forecast): the model
    earns the right to move away from "tomorrow = today" only when validation shows it
    helps. ``widen`` is the conformal correction, in units of volatility, that makes the
    central interval cover its nominal share of validation days.
    """

    shrink: float = 1.0
    widen: float = 0.0

    def to_dict(self) -> dict:
        return {"shrink": self.shrink, "widen": self.widen}


def to_return_quantiles(
    raw: np.ndarray, volatility: np.ndarray, calibration: Calibration
) -> np.ndarray:
    """Model outputs (sorted quantiles, in units of volatility) -> calibrated log-return quantiles."""
    raw = raw.astype("float64")
    middle = raw.shape[1] // 2
    median = calibration.shrink * raw[:, middle]
    lower = np.minimum(raw[:, :middle] - calibration.widen, median[:, None])
    upper = np.maximum(raw[:, middle + 1 :] + calibration.widen, median[:, None])
    return np.column_stack([lower, median, upper]) * volatility[:, None]


def to_prices(last_close: np.ndarray, return_quantiles: np.ndarray) -> np.ndarray:
    return last_close[:, None] * np.exp(return_quantiles)
