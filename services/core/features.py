"""Feature windows and the forecast arithmetic shared by the trainer and the predictor.

Numpy only, so the predictor computes exactly what the trainer computed, without torch.

Each trading day t gets a feature row built from bars up to t; a sample is the window of
the last ``window`` rows and its target is the next day's log return of the quoted close,
in units of the day's volatility: the network learns the shape of tomorrow's return in
calm and stormy months alike, and the current volatility sets its scale. Forecasts come
back as log-return quantiles and become prices as ``last close x exp(return)``, so a
drift in the price level cannot break the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURES: tuple[str, ...] = ("log_return", "log_range", "log_body", "log_volume_ratio")
TARGET = "next_log_return"
TARGET_SCALING = "realized_volatility_20d"
LOOKBACK = 20  # days behind the volume ratio and the volatility estimate
WARMUP = LOOKBACK  # rows consumed before the first complete feature row
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
    """One row of ``FEATURES`` per day, from that day's bar and the days before it.

    - log_return: log(Close_t / Close_t-1), the quantity being forecast;
    - log_range: log(High / Low), the day's intraday volatility;
    - log_body: log(Close / Open), where the day closed within its range;
    - log_volume_ratio: log(Volume / mean of the previous 20 days), unusual activity.
    The first ``WARMUP`` rows lack a full history. The training frames and a request's bars
    both come through here, so the two compute the very same numbers.
    """
    previous_mean = _after_first(_trailing_mean(volume, LOOKBACK)[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(volume / previous_mean)
    # Zero or stale volume gives -inf or NaN: bounded, and neutral when undefined.
    ratio[np.isnan(ratio)] = 0.0
    return np.column_stack(
        [
            _after_first(np.diff(np.log(close))),
            np.log(high / low),
            np.log(close / open_),
            np.clip(ratio, -5.0, 5.0),
        ]
    )


def feature_frame(prices: pd.DataFrame) -> pd.DataFrame:
    """``feature_matrix`` of a price frame, by date, without the warm-up rows."""
    columns = ("Open", "High", "Low", "Close", "Volume")
    matrix = feature_matrix(*(prices[c].to_numpy(dtype="float64") for c in columns))
    return pd.DataFrame(matrix[WARMUP:], index=prices.index[WARMUP:], columns=list(FEATURES))


def realized_volatility(close: np.ndarray) -> np.ndarray:
    """Root mean square of the last 20 daily log returns, known at each day's close.

    A fixed window (not an exponential average over all history) makes the value depend
    only on the bars a forecast needs, so serving from the last bars and evaluating over
    the whole history agree exactly.
    """
    squared = _after_first(np.diff(np.log(close)) ** 2)
    return np.maximum(np.sqrt(_trailing_mean(squared, LOOKBACK)), MIN_VOLATILITY)


@dataclass(frozen=True)
class Scaler:
    """Standardisation of the features, fitted on training rows only."""

    mean: np.ndarray
    scale: np.ndarray
    fitted_through: str  # the last date the scaler saw

    @classmethod
    def fit(cls, features: pd.DataFrame, through: pd.Timestamp) -> Scaler:
        """Fit on the feature rows dated up to ``through``, the last training target date."""
        fitted = features.loc[features.index <= through]
        if fitted.empty:
            raise ValueError(f"no feature row on or before {through:%Y-%m-%d} to fit the scaler on")
        values = fitted.to_numpy()
        scale = values.std(axis=0)
        return cls(
            mean=values.mean(axis=0),
            scale=np.where(scale > 0, scale, 1.0),
            fitted_through=through.strftime("%Y-%m-%d"),
        )

    def transform(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.scale).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "features": list(FEATURES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "target": TARGET,
            "target_scaling": TARGET_SCALING,
            "fitted_through": self.fitted_through,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Scaler:
        if tuple(data["features"]) != FEATURES or data.get("target_scaling") != TARGET_SCALING:
            raise ValueError(
                f"scaler was fitted on features {data['features']} scaled by {data.get('target_scaling')!r}; "
                f"this code computes {list(FEATURES)} scaled by {TARGET_SCALING!r}"
            )
        return cls(
            mean=np.asarray(data["mean"], dtype="float64"),
            scale=np.asarray(data["scale"], dtype="float64"),
            fitted_through=data["fitted_through"],
        )


@dataclass(frozen=True)
class Windows:
    """Samples ending on each anchor day: inputs, target, and what turns outputs into prices."""

    x: np.ndarray  # (n, window, features), scaled, float32
    y: np.ndarray  # (n,) next-day log return; NaN where the next day is not known yet
    anchor_dates: pd.DatetimeIndex  # the last day of each window
    last_close: np.ndarray  # (n,) the close on the anchor day
    volatility: np.ndarray  # (n,) realised volatility on the anchor day: the target's unit

    def take(self, keep: np.ndarray) -> Windows:
        return Windows(
            self.x[keep],
            self.y[keep],
            self.anchor_dates[keep],
            self.last_close[keep],
            self.volatility[keep],
        )


def make_windows(prices: pd.DataFrame, scaler: Scaler, window: int) -> Windows:
    """Every full window of ``prices``, scaled; the last one has no target (it is the live one)."""
    close = prices["Close"].to_numpy(dtype="float64")
    features = feature_frame(prices)
    if len(features) < window:
        raise ValueError(
            f"{len(prices)} bars give {len(features)} feature rows; a window needs {window} "
            f"(plus {WARMUP} bars of warm-up): at least {window + WARMUP} bars"
        )
    scaled = scaler.transform(features.to_numpy())
    x = np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0).transpose(0, 2, 1)
    first = WARMUP + window - 1  # the first anchor's position among the bars
    return Windows(
        x=np.ascontiguousarray(x),
        y=np.r_[np.log(close[1:] / close[:-1]), np.nan][first:],  # the next day's log return
        anchor_dates=prices.index[first:],
        last_close=close[first:],
        volatility=realized_volatility(close)[first:],
    )


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
