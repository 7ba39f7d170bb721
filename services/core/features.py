"""Feature windows and the forecast arithmetic shared by the trainer and the predictor.

Numpy only, so the predictor computes exactly what the trainer computed, without torch.

Each trading day t gets a feature row built from bars up to t; a sample is the window of
the last ``window`` rows and its target is the next day's log return of the quoted close.
Forecasts are returned as log-return quantiles and become prices as
``last close x exp(return)``, so a drift in the price level cannot break the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURES: tuple[str, ...] = ("log_return", "log_range", "log_body", "log_volume_ratio")
TARGET = "next_log_return"
VOLUME_LOOKBACK = 20
WARMUP = VOLUME_LOOKBACK  # rows consumed before the first complete feature row


def feature_frame(prices: pd.DataFrame) -> pd.DataFrame:
    """One feature row per trading day, from that day's bar and the days before it.

    - log_return: log(Close_t / Close_t-1), the quantity being forecast;
    - log_range: log(High / Low), the day's realised volatility;
    - log_body: log(Close / Open), where the day closed within its range;
    - log_volume_ratio: log(Volume / mean of the previous 20 days), unusual activity.
    The first ``WARMUP`` rows lack a full history and are dropped.
    """
    close = prices["Close"].to_numpy(dtype="float64")
    volume = prices["Volume"].to_numpy(dtype="float64")
    features = pd.DataFrame(index=prices.index)
    features["log_return"] = np.r_[np.nan, np.diff(np.log(close))]
    features["log_range"] = np.log(prices["High"].to_numpy() / prices["Low"].to_numpy())
    features["log_body"] = np.log(close / prices["Open"].to_numpy())
    previous_mean = pd.Series(volume).rolling(VOLUME_LOOKBACK).mean().shift(1).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(volume / previous_mean)
    features["log_volume_ratio"] = np.clip(ratio, -5.0, 5.0)  # stale or rebased volume, bounded
    return features.iloc[WARMUP:]


@dataclass(frozen=True)
class Scaler:
    """Standardisation of features, and a scale for the target, fitted on training rows only.

    The target is scaled but not centred: a mean daily return fitted on years of history
    is a drift the next day does not know about, and it would bias every forecast.
    """

    mean: np.ndarray
    scale: np.ndarray
    target_scale: float
    fitted_through: str  # the last date the scaler saw

    @classmethod
    def fit(cls, features: pd.DataFrame, through: pd.Timestamp) -> Scaler:
        """Fit on the feature rows dated up to ``through``, the last training target date.

        The training targets are exactly the log returns of those rows (shifted by one
        day), so the target's statistics come from the same rows and nothing later.
        """
        fitted = features.loc[features.index <= through]
        if fitted.empty:
            raise ValueError(f"no feature row on or before {through:%Y-%m-%d} to fit the scaler on")
        values = fitted.to_numpy()
        y = fitted["log_return"].to_numpy()
        scale = values.std(axis=0)
        return cls(
            mean=values.mean(axis=0),
            scale=np.where(scale > 0, scale, 1.0),
            target_scale=float(np.sqrt(np.mean(y**2))) or 1.0,
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
            "target_scale": self.target_scale,
            "fitted_through": self.fitted_through,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Scaler:
        if tuple(data["features"]) != FEATURES:
            raise ValueError(
                f"scaler was fitted on features {data['features']}, expected {list(FEATURES)}"
            )
        return cls(
            mean=np.asarray(data["mean"], dtype="float64"),
            scale=np.asarray(data["scale"], dtype="float64"),
            target_scale=float(data["target_scale"]),
            fitted_through=data["fitted_through"],
        )


@dataclass(frozen=True)
class Windows:
    """Samples ending on each anchor day: inputs, target, and what turns returns into prices."""

    x: np.ndarray  # (n, window, features), scaled, float32
    y: np.ndarray  # (n,) next-day log return; NaN where the next day is not known yet
    anchor_dates: pd.DatetimeIndex  # the last day of each window
    last_close: np.ndarray  # (n,) the close on the anchor day


def next_log_return(prices: pd.DataFrame, index: pd.Index) -> np.ndarray:
    close = prices["Close"]
    return np.log(close.shift(-1) / close).reindex(index).to_numpy()


def make_windows(prices: pd.DataFrame, scaler: Scaler, window: int) -> Windows:
    """Every full window of ``prices``, scaled; the last one has no target (it is the live one)."""
    features = feature_frame(prices)
    if len(features) < window:
        raise ValueError(
            f"{len(prices)} bars give {len(features)} feature rows; a window needs {window} "
            f"(plus {WARMUP} bars of warm-up): at least {window + WARMUP} bars"
        )
    scaled = scaler.transform(features.to_numpy())
    x = np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0).transpose(0, 2, 1)
    anchors = features.index[window - 1 :]
    return Windows(
        x=np.ascontiguousarray(x),
        y=next_log_return(prices, anchors),
        anchor_dates=anchors,
        last_close=prices["Close"].reindex(anchors).to_numpy(),
    )


@dataclass(frozen=True)
class Calibration:
    """Post-hoc corrections fitted on the validation split, applied to every forecast.

    ``shrink`` scales the median return towards zero (0 is the naive forecast): the model
    earns the right to move away from "tomorrow = today" only as far as validation
    shows it helps. ``widen`` is the conformal correction (in log return) that makes the
    central interval cover its nominal share of validation days.
    """

    shrink: float = 1.0
    widen: float = 0.0

    def to_dict(self) -> dict:
        return {"shrink": self.shrink, "widen": self.widen}


def to_return_quantiles(raw: np.ndarray, scaler: Scaler, calibration: Calibration) -> np.ndarray:
    """Model outputs (scaled target quantiles, sorted) -> calibrated log-return quantiles."""
    returns = raw.astype("float64") * scaler.target_scale
    middle = returns.shape[1] // 2
    median = calibration.shrink * returns[:, middle]
    lower = np.minimum(returns[:, :middle] - calibration.widen, median[:, None])
    upper = np.maximum(returns[:, middle + 1 :] + calibration.widen, median[:, None])
    return np.column_stack([lower, median, upper])


def to_prices(last_close: np.ndarray, return_quantiles: np.ndarray) -> np.ndarray:
    return last_close[:, None] * np.exp(return_quantiles)
