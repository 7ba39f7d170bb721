from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from services.core.features import FEATURES, WARMUP, feature_frame, volatility_unit
from services.core.quantiles import Calibration, to_prices, to_return_quantiles
from services.core.windows import Scaler, make_windows
from services.ingestion.sources import SyntheticSource

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return SyntheticSource(seed=3, first_date=date(2020, 1, 2), end=date(2021, 12, 30)).fetch(
        "T.SA", None
    )


def test_feature_rows_use_only_their_day_and_before(prices):
    features = feature_frame(prices)
    assert list(features.columns) == list(FEATURES)
    assert features.index[0] == prices.index[WARMUP]
    day = features.index[10]
    truncated = feature_frame(prices.loc[:day])
    pd.testing.assert_series_equal(truncated.loc[day], features.loc[day])
    expected = np.log(prices["Close"].loc[day] / prices["Close"].shift(1).loc[day])
    assert features.loc[day, "log_return"] == pytest.approx(expected)


def test_windows_end_on_their_anchor_and_target_the_next_close(prices):
    features = feature_frame(prices)
    scaler = Scaler.fit(features, through=features.index[-1])
    windows = make_windows(prices, scaler, window=15)
    assert windows.x.shape == (len(features) - 14, 15, len(FEATURES))
    assert windows.x.dtype == np.float32
    i = 7
    anchor = windows.anchor_dates[i]
    np.testing.assert_allclose(
        windows.x[i, -1], scaler.transform(features.loc[[anchor]].to_numpy())[0]
    )
    np.testing.assert_allclose(windows.x[i, 0], scaler.transform(features.iloc[[i]].to_numpy())[0])
    close = prices["Close"]
    following = close.index[close.index.get_loc(anchor) + 1]
    assert windows.y[i] == pytest.approx(np.log(close[following] / close[anchor]))
    assert windows.last_close[i] == close[anchor]
    assert np.isnan(windows.y[-1])  # the live window has no target yet


def test_too_few_bars_is_a_clear_error(prices):
    scaler = Scaler.fit(feature_frame(prices), prices.index[-1])
    with pytest.raises(
        ValueError, match=r"a window needs 60 \(plus 60 bars of warm-up\): at least 120 bars"
    ):
        make_windows(prices.iloc[:50], scaler, window=60)


def test_shrink_zero_is_the_naive_forecast():
    raw = np.array([[-1.0, 0.5, 2.0], [-0.5, -0.2, 0.1]])
    q = to_prices(
        np.array([10.0, 20.0]),
        to_return_quantiles(raw, np.array([0.02, 0.02]), Calibration(shrink=0.0)),
    )
    np.testing.assert_allclose(q[:, 1], [10.0, 20.0])
    assert (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all()


def test_outputs_are_in_units_of_volatility():
    raw = np.array([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])
    calm_and_stormy = to_return_quantiles(raw, np.array([0.01, 0.03]), Calibration(1.0, 0.5))
    np.testing.assert_allclose(calm_and_stormy, [[-0.015, 0.0, 0.015], [-0.045, 0.0, 0.045]])


def test_volatility_depends_only_on_the_last_bars(prices):
    bars = [prices[c].to_numpy() for c in ("Open", "High", "Low", "Close")]
    full = volatility_unit(*bars)
    tail = volatility_unit(*(b[-(WARMUP + 1) :] for b in bars))
    assert tail[-1] == pytest.approx(full[-1], rel=1e-12)
    # By hand: RiskMetrics' weights over the last 60 days, the latest weighing 1.
    returns = np.log(prices["Close"]).diff().to_numpy()[-60:]
    gap = np.log(prices["Open"] / prices["Close"].shift(1)).to_numpy()[-60:]
    hl = np.log(prices["High"] / prices["Low"]).to_numpy()[-60:]
    co = np.log(prices["Close"] / prices["Open"]).to_numpy()[-60:]
    day = gap**2 + np.maximum(0.5 * hl**2 - 0.3862944 * co**2, 0)
    weights = 0.94 ** np.arange(60)[::-1]
    expected = np.sqrt(np.sum(weights * (returns**2 + day) / 2) / weights.sum())
    assert full[-1] == pytest.approx(expected, rel=1e-6)


def test_synthetic_history_only_grows_with_a_later_end():
    short = SyntheticSource(seed=9, first_date=date(2022, 1, 3), end=date(2022, 6, 30)).fetch(
        "X.SA", None
    )
    long = SyntheticSource(seed=9, first_date=date(2022, 1, 3), end=date(2022, 12, 29)).fetch(
        "X.SA", None
    )
    pd.testing.assert_frame_equal(long.loc[short.index], short)
