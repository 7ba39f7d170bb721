"""The classic interval forecasters the walk-forward benchmark measures the network against."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from bench.classic import CLASSIC, ewma
from services.ingestion.sources import SyntheticSource

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return SyntheticSource(seed=3, first_date=date(2015, 1, 2), end=date(2021, 12, 30)).fetch(
        "T.SA", None
    )


@pytest.mark.parametrize("name", ["EWMA 0.94", "GARCH(1,1)-t", "empirical 252d"])
def test_classic_forecasters_use_nothing_after_the_anchor(prices, name):
    anchors = prices.index[-300:-200]
    forecast = CLASSIC[name](prices, anchors)
    # The future rewritten: a crash after the last anchor changes none of its forecasts.
    rewritten = prices.copy()
    rewritten.loc[rewritten.index[-200:], ["Open", "High", "Low", "Close"]] *= 0.5
    np.testing.assert_allclose(CLASSIC[name](rewritten, anchors), forecast)
    assert np.all(np.diff(forecast, axis=1) > 0)  # sorted quantiles around tomorrow = today
    np.testing.assert_allclose(forecast[:, 1], prices["Close"].loc[anchors], rtol=0.01)


def test_ewma_quantiles_are_riskmetrics_normal_ones(prices):
    returns = np.log(prices["Close"]).diff().fillna(0.0).to_numpy()
    variance = np.var(returns[1:31])
    for r in returns[1:]:
        variance = 0.94 * variance + 0.06 * r**2
    last = prices.index[-1:]
    upper = prices["Close"].iloc[-1] * np.exp(1.2815516 * np.sqrt(variance))
    assert ewma(prices, last)[0, 2] == pytest.approx(upper, rel=1e-6)
