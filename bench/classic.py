"""The classic interval forecasters a risk desk computes, scored beside the network.

Each one forecasts the 10 %, 50 % and 90 % quantiles of the next close from what is known at
the anchor's close, and nothing later:

- EWMA: RiskMetrics' exponentially weighted variance (lambda 0.94) of daily log returns,
  normal quantiles around tomorrow = today;
- GARCH(1,1) with Student-t shocks (the ``arch`` package), its parameters refitted at the
  start of every month on all returns before it, its variance filtered day by day;
- empirical: the quantiles of the last 252 daily log returns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from services.core.scoring import ewma_sigma

LEVELS = (0.1, 0.5, 0.9)
EMPIRICAL_DAYS = 252
GARCH_MIN_DAYS = 500  # returns a fit needs before its first month


def _log_returns(prices: pd.DataFrame) -> pd.Series:
    return np.log(prices["Close"]).diff()


def _prices(prices: pd.DataFrame, anchors: pd.DatetimeIndex, returns: np.ndarray) -> np.ndarray:
    """(days, levels) return quantiles around each anchor's close, as prices."""
    close = prices["Close"].reindex(anchors).to_numpy()
    return close[:, None] * np.exp(returns)


def ewma(prices: pd.DataFrame, anchors: pd.DatetimeIndex) -> np.ndarray:
    """Normal quantiles around tomorrow = today, scaled by the EWMA volatility the predictor's
    live classic interval uses (services.core.scoring)."""
    sigma = ewma_sigma(prices["Close"]).reindex(anchors).to_numpy()
    z = stats.norm.ppf(LEVELS)
    return _prices(prices, anchors, sigma[:, None] * z[None, :])


def empirical(prices: pd.DataFrame, anchors: pd.DatetimeIndex) -> np.ndarray:
    returns = _log_returns(prices)
    window = returns.rolling(EMPIRICAL_DAYS, min_periods=EMPIRICAL_DAYS)
    quantiles = np.column_stack([window.quantile(q).reindex(anchors).to_numpy() for q in LEVELS])
    return _prices(prices, anchors, quantiles)


def garch_t(prices: pd.DataFrame, anchors: pd.DatetimeIndex) -> np.ndarray:
    from arch import arch_model

    returns = _log_returns(prices).dropna()
    scaled = 100 * returns  # arch's optimiser prefers percent
    quantiles = np.full((len(anchors), len(LEVELS)), np.nan)
    months = pd.PeriodIndex(anchors, freq="M")
    for month in months.unique():
        on = np.flatnonzero(months == month)
        before = scaled.loc[scaled.index < month.start_time]
        if len(before) < GARCH_MIN_DAYS:
            continue
        with warnings.catch_warnings():  # convergence chatter on calm stretches
            warnings.simplefilter("ignore")
            fit = arch_model(before, mean="Zero", vol="GARCH", p=1, q=1, dist="t").fit(disp="off")
        omega, alpha, beta, nu = (fit.params[k] for k in ("omega", "alpha[1]", "beta[1]", "nu"))
        # Filter the month's variance with the month's fixed parameters, day by day.
        variance = fit.conditional_volatility.iloc[-1] ** 2
        last = before.iloc[-1]
        path = {}
        for day, value in scaled.loc[scaled.index >= month.start_time].items():
            variance = omega + alpha * last**2 + beta * variance  # known at the day before
            path[day], last = variance, value
            if day > anchors[on[-1]]:
                break
        # The variance of the day after each anchor, known at the anchor's close.
        following = scaled.index.get_indexer(anchors[on]) + 1
        known = [
            path.get(scaled.index[i], np.nan) if i < len(scaled) else np.nan for i in following
        ]
        sigma = np.sqrt(np.asarray(known)) / 100
        z = stats.t.ppf(LEVELS, nu) * np.sqrt((nu - 2) / nu)  # unit-variance Student t
        quantiles[on] = sigma[:, None] * z[None, :]
    return _prices(prices, anchors, quantiles)


EWMA = "EWMA 0.94"
CLASSIC = {EWMA: ewma, "GARCH(1,1)-t": garch_t, "empirical 252d": empirical}
