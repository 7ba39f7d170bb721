"""A reference that cheats: the interval a volatility model would give if it knew, in
hindsight, the realized variance of the next 22 trading days.

It measures what a better monthly volatility forecast could buy at most. Tomorrow's return
divided by that hindsight volatility has its 10 % and 90 % quantiles taken from the years
before each test year, and the interval is ``close x exp(hindsight volatility x quantile)``,
like the others. Within a month volatility still moves, so it does not beat every forecaster
on every year; where it barely beats the classic ones, no monthly forecast can do much better.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.core.features import day_variance

HORIZON = 22  # trading days: about a month
LEVELS = (0.1, 0.5, 0.9)


def blended_variance(prices: pd.DataFrame) -> np.ndarray:
    """Each day's variance estimate, as the product's volatility unit blends it: half the
    squared close-to-close return, half the day's range variance."""
    o, h, low, c = (prices[k].to_numpy(dtype="float64") for k in ("Open", "High", "Low", "Close"))
    returns = np.r_[np.nan, np.diff(np.log(c))]
    return 0.5 * returns**2 + 0.5 * day_variance(o, h, low, c)


def hindsight(prices: pd.DataFrame, anchors: pd.DatetimeIndex) -> np.ndarray:
    """(anchors, 3) price quantiles from the next ``HORIZON`` days' realized variance."""
    close = prices["Close"].to_numpy(dtype="float64")
    variance = pd.Series(blended_variance(prices))
    # The mean of days t+1 .. t+HORIZON at t (of those there are, near the end).
    ahead = variance[::-1].rolling(HORIZON, min_periods=1).mean()[::-1].shift(-1).to_numpy()
    sigma = np.sqrt(ahead)
    z = np.r_[np.diff(np.log(close)), np.nan] / sigma  # tomorrow's return in those units
    position = prices.index.get_indexer(anchors)
    quantiles = np.full((len(anchors), len(LEVELS)), np.nan)
    for year in np.unique(anchors.year):
        before = (prices.index.year < year) & np.isfinite(z)
        on = anchors.year == year
        if not before.any():  # no year before this one to take the quantiles from
            continue
        q = np.quantile(z[before], LEVELS)
        quantiles[on] = sigma[position[on], None] * q[None, :]
    quantiles[np.isfinite(quantiles[:, 0]), 1] = 0.0  # the median: tomorrow = today, as all here
    return close[position, None] * np.exp(quantiles)
