"""bench-after-training forecasts each day as the predictor's request path does: its three
widenings are what a current snapshot, the request's own closes and a frozen widening give."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from bench.after_training import REQUEST_BARS, forecast_days
from services.core.quantiles import Calibration
from services.ingestion.sources import SyntheticSource
from tests.helpers import untrained_model

pytestmark = pytest.mark.unit


def test_each_day_is_forecast_from_its_last_bars_with_each_widening(tmp_path):
    prices = SyntheticSource(seed=13, first_date=date(2021, 1, 4), end=date(2022, 12, 29)).fetch(
        "A.SA", None
    )
    model, dm = untrained_model(tmp_path, "A.SA", prices, window=10, test_days=60, seed=2)
    since = f"{dm.splits.val[1]:%Y-%m-%d}"
    model = model.calibrated(Calibration(shrink=0.0, widen=0.3, step=0.05, since=since))
    cutoff = prices.index[-40]
    frame = forecast_days(model, prices, cutoff)

    record = model.forecast(prices)  # every day, offline, as a current snapshot serves it
    days = pd.DatetimeIndex(frame["anchor_date"])
    assert days[0] == cutoff and days[-1] == prices.index[-2]  # the last has no next close
    offline = record.prices[record.anchor_dates.isin(days)]
    current = frame[[f"current|{q}" for q in model.quantiles]].to_numpy()
    np.testing.assert_allclose(current, offline, rtol=1e-7)
    # 200 bars reach back over the cutoff for these 40 days: the replay is exact too.
    assert model.bars_needed + 40 < REQUEST_BARS
    replayed = frame[[f"replayed|{q}" for q in model.quantiles]].to_numpy()
    np.testing.assert_allclose(replayed, offline, rtol=1e-7)
    frozen = frame[f"frozen|{model.quantiles[0]}"].to_numpy()
    assert (frozen[1:] != offline[1:, 0]).mean() > 0.5
    np.testing.assert_allclose(frame["actual"], prices["Close"].shift(-1).reindex(days))
    targets = prices.index.to_series().shift(-1).reindex(days)
    np.testing.assert_array_equal(frame["year"], targets.dt.year)
