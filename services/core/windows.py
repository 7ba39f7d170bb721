"""Feature windows, the network's samples, shared by the trainer and the predictor: the
features of features.py standardised by a Scaler fitted on training rows, cut into windows
of consecutive days, each with its target and what turns the network's outputs into prices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.core.features import (
    FEATURES,
    TARGET,
    TARGET_SCALING,
    WARMUP,
    features_and_unit,
    price_columns,
)


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
    volatility: np.ndarray  # (n,) ``volatility_unit`` on the anchor day: the target's unit

    def take(self, keep: np.ndarray) -> Windows:
        return Windows(
            self.x[keep],
            self.y[keep],
            self.anchor_dates[keep],
            self.last_close[keep],
            self.volatility[keep],
        )

    @classmethod
    def concatenate(cls, parts: list[Windows]) -> Windows:
        """Several tickers' windows as one batch, one after the other."""
        return cls(
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            pd.DatetimeIndex(np.concatenate([p.anchor_dates for p in parts])),
            np.concatenate([p.last_close for p in parts]),
            np.concatenate([p.volatility for p in parts]),
        )


def make_windows(prices: pd.DataFrame, scaler: Scaler, window: int) -> Windows:
    """Every full window of ``prices``, scaled; the last one has no target (it is the live one)."""
    return column_windows(prices.index, *price_columns(prices), scaler=scaler, window=window)


def column_windows(
    days: pd.DatetimeIndex | np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    *,
    scaler: Scaler,
    window: int,
) -> Windows:
    """``make_windows`` of bars given as columns (a request's), without a frame."""
    matrix, unit = features_and_unit(open_, high, low, close, volume)
    features = matrix[WARMUP:]
    if len(features) < window:
        raise ValueError(
            f"{len(close)} bars give {len(features)} feature rows; a window needs {window} "
            f"(plus {WARMUP} bars of warm-up): at least {window + WARMUP} bars"
        )
    scaled = scaler.transform(features)
    x = np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0).transpose(0, 2, 1)
    first = WARMUP + window - 1  # the first anchor's position among the bars
    return Windows(
        x=np.ascontiguousarray(x),
        y=np.r_[np.log(close[1:] / close[:-1]), np.nan][first:],  # the next day's log return
        anchor_dates=pd.DatetimeIndex(days[first:]),
        last_close=close[first:],
        volatility=unit[first:],
    )
