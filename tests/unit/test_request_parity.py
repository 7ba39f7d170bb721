"""The request path (numpy, a request's bars) against the frame path, written in pandas.

The oracle below is the pandas code the predictor ran before its fast path (the price rules
of ``validate_prices`` and the way a request's bars became a frame), with the features and
the volatility unit written again as pandas expressions of their definitions. On the real
price files and on random histories, valid and invalid, the request path must give the same
features (to 1e-12), the same forecasts and the same error messages.
"""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api import forecast_pb2
from services.core.features import (
    LOOKBACK,
    MIN_VOLATILITY,
    UNIT_DAYS,
    UNIT_DECAY,
    WARMUP,
    feature_frame,
    volatility_unit,
)
from services.core.forecaster import TickerModel
from services.core.price_rules import Bars
from services.core.prices import read_price_csv, validate_prices
from services.core.quantiles import Calibration
from services.ingestion.sources import SyntheticSource
from services.predictor.errors import InvalidInput
from services.predictor.forecasts import History, request_bars
from services.predictor.wire import history_of
from tests.helpers import SHARED_DATA, untrained_model

pytestmark = pytest.mark.unit

WINDOW = 10
MAX_BARS = 400
TICKERS = ("PETR4.SA", "VALE3.SA", "ITUB4.SA", "BBDC4.SA")


class Bar(NamedTuple):
    """A daily bar as callers send it, without the proto."""

    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float


# -- the oracle: the pandas path as it was -----------------------------------------------


def reference_features(prices: pd.DataFrame) -> pd.DataFrame:
    close = prices["Close"].to_numpy(dtype="float64")
    volume = prices["Volume"].to_numpy(dtype="float64")
    features = pd.DataFrame(index=prices.index)
    features["log_return"] = np.r_[np.nan, np.diff(np.log(close))]
    features["log_range"] = np.log(prices["High"].to_numpy() / prices["Low"].to_numpy())
    features["log_body"] = np.log(close / prices["Open"].to_numpy())
    previous_mean = pd.Series(volume).rolling(LOOKBACK).mean().shift(1).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(volume / previous_mean)
    features["log_volume_ratio"] = np.clip(np.nan_to_num(ratio, nan=0.0), -5.0, 5.0)
    unit = pd.Series(reference_volatility(prices) ** 2, index=prices.index)
    day = reference_day_variance(prices).clip(lower=MIN_VOLATILITY**2)
    for days in (1, 5, 22):
        mean = day.rolling(days).mean()
        features[f"range_variance_{days}d"] = np.log(mean / unit).clip(-6.0, 6.0)
    squared = (np.log(prices["Close"]).diff() ** 2).clip(lower=MIN_VOLATILITY**2)
    features["return_variance_5d"] = np.log(squared.rolling(5).mean() / unit).clip(-6.0, 6.0)
    return features.iloc[WARMUP:]


def reference_day_variance(prices: pd.DataFrame) -> pd.Series:
    """The overnight gap squared plus Garman-Klass."""
    gap = np.log(prices["Open"] / prices["Close"].shift(1))
    range_, body = np.log(prices["High"] / prices["Low"]), np.log(prices["Close"] / prices["Open"])
    return gap**2 + (0.5 * range_**2 - (2 * math.log(2) - 1) * body**2).clip(lower=0.0)


def reference_volatility(prices: pd.DataFrame) -> np.ndarray:
    blend = 0.5 * np.log(prices["Close"]).diff() ** 2 + 0.5 * reference_day_variance(prices)
    weights = UNIT_DECAY ** np.arange(UNIT_DAYS)[::-1]  # the oldest day first
    variance = blend.rolling(UNIT_DAYS).apply(lambda w: w @ weights / weights.sum(), raw=True)
    return np.sqrt(variance).clip(lower=MIN_VOLATILITY).to_numpy()


def _listed(index: pd.Index, mask) -> str:
    days = [d.strftime("%Y-%m-%d") for d in index[np.asarray(mask, dtype=bool)]]
    return ", ".join(days[:5]) + (f" (+{len(days) - 5} more)" if len(days) > 5 else "")


def reference_problems(frame: pd.DataFrame) -> list[str]:
    index, problems = frame.index, []
    non_finite = ~np.isfinite(frame.to_numpy()).all(axis=1)
    if non_finite.any():
        problems.append(f"NaN or infinite values on {_listed(index, non_finite)}")
    with np.errstate(invalid="ignore"):
        prices = frame[["Open", "High", "Low", "Close", "Adj Close"]]
        not_positive = (prices <= 0).any(axis=1) & ~non_finite
        if not_positive.any():
            problems.append(f"zero or negative prices on {_listed(index, not_positive)}")
        if (frame["Volume"] < 0).any():
            problems.append(f"negative volume on {_listed(index, frame['Volume'] < 0)}")
        high_miss = frame[["Open", "Close"]].max(axis=1) / frame["High"] - 1
        low_miss = 1 - frame[["Open", "Close"]].min(axis=1) / frame["Low"]
        if (high_miss > 0.03).any():
            problems.append(f"High below max(Open, Close) on {_listed(index, high_miss > 0.03)}")
        if (low_miss > 0.03).any():
            problems.append(f"Low above min(Open, Close) on {_listed(index, low_miss > 0.03)}")
    return problems


def reference_history(history: list[Bar], bars_needed: int) -> pd.DataFrame | str:
    """The frame a request's bars became, or the message refusing them."""
    if len(history) > MAX_BARS:
        return f"history has {len(history)} bars; at most {MAX_BARS} are accepted"
    days = []
    for number, bar in enumerate(history, start=1):
        try:
            days.append(date.fromisoformat(bar.date))
        except ValueError:
            return f"history bar {number} has date {bar.date!r}; expected YYYY-MM-DD"
    for earlier, later in itertools.pairwise(days):
        if later <= earlier:
            return f"history dates must strictly increase: {later} follows {earlier}"
    frame = pd.DataFrame(
        {
            "Open": [b.open for b in history],
            "High": [b.high for b in history],
            "Low": [b.low for b in history],
            "Close": [b.close for b in history],
            "Adj Close": [b.close for b in history],
            "Volume": [b.volume for b in history],
        },
        index=pd.DatetimeIndex(days, name="Date"),
    )
    problems = reference_problems(frame)
    if problems:
        return "history: " + "; ".join(problems)
    frame = frame.loc[frame["Volume"] > 0]
    if frame.empty:
        return "history: every row has zero volume (no trading day left)"
    if len(frame) < bars_needed:
        return (
            f"history has {len(frame)} usable bars; the model needs at least {bars_needed} "
            f"(a window of {WINDOW} plus {bars_needed - WINDOW} of warm-up)"
        )
    return frame


# -- fixtures --------------------------------------------------------------------------


def real_prices():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real prices not found at {SHARED_DATA} (they live beside the project)")
    return {t: validate_prices(read_price_csv(SHARED_DATA / f"{t}.csv"), t)[0] for t in TICKERS}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> TickerModel:
    """A small network with random weights: parity does not need a good one."""
    prices = SyntheticSource(seed=8, first_date=date(2021, 1, 4), end=date(2022, 12, 29)).fetch(
        "P.SA", None
    )
    folder = tmp_path_factory.mktemp("parity-model")
    model, _ = untrained_model(folder, "P.SA", prices, WINDOW, test_days=40, seed=3)
    return model.calibrated(Calibration(shrink=0.7, widen=0.2))


def bars_of(frame: pd.DataFrame) -> list[Bar]:
    return [
        Bar(d.strftime("%Y-%m-%d"), r.Open, r.High, r.Low, r.Close, r.Volume)
        for d, r in zip(frame.index, frame.itertuples(), strict=True)
    ]


# -- on the real price files -----------------------------------------------------------


@pytest.mark.parametrize("ticker", TICKERS)
def test_features_and_volatility_match_the_pandas_path_on_real_prices(ticker):
    prices = real_prices()[ticker]
    np.testing.assert_allclose(
        feature_frame(prices).to_numpy(), reference_features(prices).to_numpy(), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        volatility_unit(*(prices[c].to_numpy() for c in ("Open", "High", "Low", "Close"))),
        reference_volatility(prices),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("ticker", TICKERS)
def test_forecasts_from_bars_match_the_frame_windows_on_real_prices(ticker, model):
    prices = real_prices()[ticker]
    frame_path = model.forecast(prices.iloc[-300:])  # every window of the frame
    for end in (-1, -50, -150):
        tail = prices.iloc[-300 : len(prices) + end + 1]
        bars = request_bars(History.of(bars_of(tail.iloc[-200:])), model, MAX_BARS)
        expected = frame_path.prices[len(frame_path.prices) + end]
        np.testing.assert_allclose(
            model.forecast_next(bars), expected, rtol=1e-7
        )  # the network runs in float32


# -- on random histories, valid and invalid -------------------------------------------

_prices = st.one_of(
    st.floats(min_value=1.0, max_value=100.0),
    st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf]),
)


@st.composite
def histories(draw) -> list[Bar]:
    """Mostly sound daily bars; some broken in one of the ways callers break them: a bar's
    value, its date's spelling, or the order of two dates."""
    count = draw(st.integers(min_value=0, max_value=60))
    day = date(2024, 1, 1) + timedelta(days=draw(st.integers(0, 300)))
    close = draw(st.floats(min_value=5.0, max_value=50.0))
    bars = []
    for _ in range(count):
        day += timedelta(days=draw(st.sampled_from([1, 1, 1, 3])))
        close *= math.exp(draw(st.floats(min_value=-0.05, max_value=0.05)))
        open_ = close * math.exp(draw(st.floats(min_value=-0.02, max_value=0.02)))
        high = max(open_, close) * (1 + draw(st.floats(min_value=0, max_value=0.02)))
        low = min(open_, close) * (1 - draw(st.floats(min_value=0, max_value=0.02)))
        volume = draw(st.sampled_from([1e6, 2e6, 5e5, 0.0]))
        broken = draw(st.integers(min_value=0, max_value=30))
        if broken == 1:
            open_ = draw(_prices)
        elif broken == 2:
            high = draw(st.one_of(_prices, st.just(min(open_, close) * 0.9)))
        elif broken == 3:
            low = draw(st.one_of(_prices, st.just(max(open_, close) * 1.1)))
        elif broken == 4:
            close = draw(_prices)
        elif broken == 5:
            volume = draw(st.sampled_from([-1.0, math.nan, math.inf]))
        elif broken == 6:  # a High a little under the body: a slip, or a refusal past 3 %
            high = max(open_, close) * (1 - draw(st.floats(min_value=0, max_value=0.05)))
        elif broken == 7:
            low = min(open_, close) * (1 + draw(st.floats(min_value=0, max_value=0.05)))
        bars.append(Bar(day.isoformat(), open_, high, low, close, volume))
        if not (math.isfinite(close) and close > 0):
            close = 20.0
    if bars and draw(st.integers(min_value=0, max_value=9)) == 0:  # a misspelt date
        at = draw(st.integers(min_value=0, max_value=len(bars) - 1))
        spelling = draw(st.sampled_from(["2024-13-01", "soon", "", "2024/01/02"]))
        bars[at] = bars[at]._replace(date=spelling)
    if len(bars) > 1 and draw(st.integers(min_value=0, max_value=9)) == 0:  # two days swapped
        at = draw(st.integers(min_value=1, max_value=len(bars) - 1))
        bars[at - 1], bars[at] = bars[at], bars[at - 1]
    return bars


def as_request(history: list[Bar]) -> forecast_pb2.ForecastRequest:
    return forecast_pb2.ForecastRequest(
        ticker="P.SA", history=[forecast_pb2.Bar(**bar._asdict()) for bar in history]
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_random_histories_get_the_same_answer_on_both_paths(model, history):
    """Field by field and from the wire bytes alike, as the pandas path answered."""
    expected = reference_history(history, model.bars_needed)
    for columns in (History.of(history), history_of(as_request(history))):
        if isinstance(expected, str):
            with pytest.raises(InvalidInput) as refused:
                request_bars(columns, model, MAX_BARS)
            assert str(refused.value) == expected
            continue
        bars = request_bars(columns, model, MAX_BARS)
        np.testing.assert_allclose(
            model.forecast_next(bars), model.forecast(expected).prices[-1], rtol=1e-7
        )
        assert (bars.days == expected.index.to_numpy().astype("datetime64[D]")).all()


def test_the_history_check_sees_every_bar_not_only_the_window(model):
    """The forecast reads the last bars only; the rules still apply to all of them."""
    prices = SyntheticSource(seed=2, first_date=date(2023, 1, 2), end=date(2023, 12, 28)).fetch(
        "P.SA", None
    )
    history = bars_of(prices)
    history[3] = history[3]._replace(low=-1.0)
    with pytest.raises(
        InvalidInput, match=f"history: zero or negative prices on {history[3].date}"
    ):
        request_bars(History.of(history), model, MAX_BARS)


def test_a_bars_days_are_what_a_frame_knows_them_as():
    prices = SyntheticSource(seed=2, first_date=date(2023, 1, 2), end=date(2023, 3, 31)).fetch(
        "P.SA", None
    )
    bars = Bars.from_frame(prices)
    assert list(np.datetime_as_string(bars.days)) == list(prices.index.strftime("%Y-%m-%d"))
    assert (bars.adj_close == prices["Adj Close"].to_numpy()).all()
