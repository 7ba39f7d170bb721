"""The interval's adaptive conformal widening: how each close moves it, that it brings coverage
back after a change of regime, and that replaying it from a day's prices gives what the
whole record gave that day."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest

from services.core.price_rules import Bars
from services.core.quantiles import Calibration, adapted_widening, to_return_quantiles
from services.ingestion.sources import SyntheticSource
from tests.helpers import untrained_model

pytestmark = pytest.mark.unit

LEVEL = 0.8
BAND = np.array([[-1.0, 0.0, 1.0]])  # raw quantiles: the interval is (-1, 1) before widening


def test_a_miss_widens_by_the_step_times_the_hit_rate_and_a_hit_narrows_by_the_miss_rate():
    calibration = Calibration(shrink=0.0, widen=0.5, step=0.1, since="2024-01-02")
    realized = np.array([3.0, 0.0, 0.0, -2.0])  # outside (-1.5, 1.5), inside, inside, outside
    widening = adapted_widening(np.repeat(BAND, 4, axis=0), realized, calibration, LEVEL)
    np.testing.assert_allclose(widening, [0.5, 0.58, 0.56, 0.54, 0.62])


def test_an_unknown_close_ends_the_replay():
    calibration = Calibration(0.0, 0.5, step=0.1, since="2024-01-02")
    realized = np.array([3.0, np.nan, 5.0])
    widening = adapted_widening(np.repeat(BAND, 3, axis=0), realized, calibration, LEVEL)
    np.testing.assert_allclose(widening, [0.5, 0.58, 0.58, 0.58])


def test_a_fixed_calibration_never_moves():
    calibration = Calibration(0.0, 0.5)
    assert not calibration.adapts and not replace(calibration, step=0.1).adapts
    realized = np.full(5, 9.0)
    assert (adapted_widening(np.repeat(BAND, 5, axis=0), realized, calibration, LEVEL) == 0.5).all()


def test_coverage_returns_to_its_rate_when_volatility_doubles():
    """A band calibrated for N(0, 1) returns, then a year of returns twice as wide: fixed, it
    covers under half of them; adapting, close to the 80 % asked for once it has seen two
    months of them."""
    rng = np.random.default_rng(5)
    z = np.r_[rng.standard_normal(250), 2 * rng.standard_normal(250)]
    raw = np.repeat([[-1.2816, 0.0, 1.2816]], len(z), axis=0)

    def coverage(step: float) -> float:
        calibration = Calibration(0.0, 0.0, step=step, since="2024-01-02")
        widen = adapted_widening(raw, z, calibration, LEVEL)[:-1]
        bounds = to_return_quantiles(raw, np.ones(len(z)), calibration, widen)
        inside = (z >= bounds[:, 0]) & (z <= bounds[:, -1])
        return float(inside[300:].mean())

    assert coverage(0.0) < 0.5
    assert 0.75 <= coverage(0.1) <= 0.85


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return SyntheticSource(seed=11, first_date=date(2021, 1, 4), end=date(2022, 12, 29)).fetch(
        "A.SA", None
    )


@pytest.fixture(scope="module")
def model(prices, tmp_path_factory):
    """A small network with random weights whose widening adapts from its test block on."""
    folder = tmp_path_factory.mktemp("adaptive-model")
    model, dm = untrained_model(folder, "A.SA", prices, window=10, test_days=60, seed=4)
    since = f"{dm.splits.val[1]:%Y-%m-%d}"
    return model.calibrated(Calibration(shrink=0.0, widen=0.3, step=0.05, since=since))


def test_each_days_widening_replayed_from_its_prices_is_the_records(model, prices):
    """What the predictor serves on a day, from the prices up to it, is what the whole record
    says of that day: nothing of a later close leaks into it, and nothing is lost."""
    record = model.forecast(prices)
    since = pd.Timestamp(model.calibration.since)
    days = record.anchor_dates[record.anchor_dates >= since]
    assert len(days) > 50
    served = []
    for day in days:
        known = prices.loc[:day]
        widen = model.widen_on(model.widening_path(known), day)
        served.append(model.forecast_next(Bars.from_frame(known), widen))
    np.testing.assert_allclose(served, record.prices[-len(days) :], rtol=1e-7)
    fixed = model.calibrated(replace(model.calibration, step=0.0))
    moved = fixed.forecast(prices).prices[-len(days) :] != record.prices[-len(days) :]
    assert moved[:, 0].mean() > 0.9  # the replay did move the interval


def test_a_forecast_before_since_keeps_the_fitted_widening(model, prices):
    since = pd.Timestamp(model.calibration.since)
    path = model.widening_path(prices)
    assert path.index[0] == since and path.iloc[0] == model.calibration.widen
    before = prices.index[prices.index < since][-5]
    assert model.widen_on(path, before) == model.calibration.widen
    after = prices.index[-1] + pd.Timedelta(days=3)  # a request's bars newer than the prices
    assert model.widen_on(path, after) == path.iloc[-1]


def test_prices_that_end_before_since_serve_the_fitted_widening(model, prices):
    """A predictor whose snapshot is older than the model's validation block still loads."""
    since = pd.Timestamp(model.calibration.since)
    older = prices.loc[: since - pd.Timedelta(days=1)]
    path = model.widening_path(older)
    assert path.empty and model.widen_on(path, older.index[-1]) == model.calibration.widen


def test_a_request_past_the_snapshot_replays_its_own_closes(model, prices):
    """A predictor whose snapshot ends on some day serves later requests with the widening a
    current snapshot would give, when the request's bars reach back a window and its warm-up
    before that day; the widening moves with the request's closes, not only the snapshot's."""
    since = pd.Timestamp(model.calibration.since)
    record = model.widening_path(prices)
    snapshot = prices.loc[: record.index[10]]
    path = model.widening_path(snapshot)
    later = prices.index[(prices.index > snapshot.index[-1])][:30]
    reach = len(prices.loc[: snapshot.index[-1]]) - model.bars_needed
    for day in later:
        bars = Bars.from_frame(prices.loc[:day].iloc[reach:])
        assert model.widen_for(path, bars) == pytest.approx(record[day], rel=1e-12)
    assert record[later].nunique() > 5  # the closes after the snapshot did move it
    # Bars that end on a day the snapshot holds: the snapshot's widening of that day.
    inside = Bars.from_frame(prices.loc[: record.index[5]])
    assert model.widen_for(path, inside) == path.iloc[5]
    assert path.index[0] == since


def test_a_request_that_starts_after_the_snapshot_resumes_from_its_last_widening(model, prices):
    """Bars that do not reach back to the snapshot's end: the closes between are unknown, so
    the replay starts from the snapshot's last widening at the first anchor the bars allow."""
    path = model.widening_path(prices.loc[: pd.Timestamp(model.calibration.since)])
    assert len(path) == 1
    bars = prices.iloc[-model.bars_needed - 20 :]
    first = bars.index[model.bars_needed - 1]
    resumed = model.calibrated(
        replace(model.calibration, widen=path.iloc[-1], since=f"{first:%Y-%m-%d}")
    )
    expected = resumed.widening_path(bars).iloc[-1]
    assert model.widen_for(path, Bars.from_frame(bars)) == pytest.approx(expected, rel=1e-12)
    assert expected != path.iloc[-1]
    fixed = model.calibrated(replace(model.calibration, step=0.0))
    assert fixed.widen_for(path, Bars.from_frame(bars)) == model.calibration.widen
