"""The forecast arithmetic: the network's outputs become calibrated quantiles and prices.

Outputs are sorted quantiles of tomorrow's log return in units of the day's volatility;
they become log returns by that volatility and prices as ``last close x exp(return)``, so
a drift in the price level cannot break the model.

The interval's conformal widening can adapt (Gibbs & Candès, 2021; Angelopoulos, Candès &
Tibshirani, 2023, "quantile tracking"): from the first forecast after the validation block
on, each realized close moves it, up by ``step x (1 - miss rate)`` when the close fell
outside its interval and down by ``step x miss rate`` when inside, so the share of misses
returns to its nominal rate after a change of regime. The widening of any day is a replay
of the closes since then: the trainer's walk-forward and the predictor compute it from the
same prices and agree, and nothing has to survive a restart.
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
    central interval cover its nominal share of validation days. With ``step`` above 0 it
    adapts to each close after ``since`` (the anchor day of the first forecast after the
    validation block, ISO), by ``step`` units of volatility per miss.
    """

    shrink: float = 1.0
    widen: float = 0.0
    step: float = 0.0
    since: str = ""

    @property
    def adapts(self) -> bool:
        return self.step > 0 and bool(self.since)

    def to_dict(self) -> dict:
        return {"shrink": self.shrink, "widen": self.widen, "step": self.step, "since": self.since}

    def fitted(self) -> dict[str, float]:
        """What validation fitted, as numbers (a run logs them as metrics)."""
        return {"shrink": self.shrink, "widen": self.widen}


def to_return_quantiles(
    raw: np.ndarray,
    volatility: np.ndarray,
    calibration: Calibration,
    widen: np.ndarray | float | None = None,
) -> np.ndarray:
    """Model outputs (sorted quantiles, in units of volatility) -> calibrated log-return
    quantiles; ``widen`` (each row's, or one for all) stands in for the calibration's own."""
    raw = raw.astype("float64")
    middle = raw.shape[1] // 2
    widen = np.reshape(calibration.widen if widen is None else widen, (-1, 1))
    median = calibration.shrink * raw[:, middle]
    lower = np.minimum(raw[:, :middle] - widen, median[:, None])
    upper = np.maximum(raw[:, middle + 1 :] + widen, median[:, None])
    return np.column_stack([lower, median, upper]) * volatility[:, None]


def adapted_widening(
    raw: np.ndarray, realized: np.ndarray, calibration: Calibration, level: float
) -> np.ndarray:
    """The widening of each of ``n`` consecutive forecasts, the first made on ``since``, and
    the one after the last of them: ``n + 1`` values in units of volatility.

    ``realized`` is each forecast day's log return in units of volatility (NaN until its
    close is known, which ends the replay: later values stay at the last one). A forecast's
    own widening decides whether its close fell outside, so this is the path the served
    intervals took.
    """
    middle = raw.shape[1] // 2
    lower, upper = raw[:, 0].astype("float64"), raw[:, -1].astype("float64")
    median = calibration.shrink * raw[:, middle].astype("float64")
    miss_rate = 1.0 - level
    widening = np.full(len(raw) + 1, calibration.widen)
    w = calibration.widen
    for k, z in enumerate(realized):
        if z != z:  # NaN: not known yet
            widening[k:] = w
            break
        widening[k] = w
        outside = z < min(lower[k] - w, median[k]) or z > max(upper[k] + w, median[k])
        w += calibration.step * (outside - miss_rate)
    else:
        widening[-1] = w
    return widening


def to_prices(last_close: np.ndarray, return_quantiles: np.ndarray) -> np.ndarray:
    return last_close[:, None] * np.exp(return_quantiles)
