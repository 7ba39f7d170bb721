"""Walk-forward folds, the interval scores, and the classic forecasters the network is held to."""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import pandas as pd
import pytest

from services.core.scoring import interval_scores, pinball_loss
from services.ingestion.sources import SyntheticSource
from trainer.data import DataError
from trainer.settings import TrainSettings
from trainer.walk_forward import membership, trailing_folds, yearly_folds

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return SyntheticSource(seed=3, first_date=date(2015, 1, 2), end=date(2021, 12, 30)).fetch(
        "T.SA", None
    )


def settings(**kwargs) -> TrainSettings:
    options = {"window": 10, "val_days": 100, "test_days": 120, "folds": 3} | kwargs
    return TrainSettings(**options)


def test_trailing_folds_test_consecutive_blocks_ending_where_one_training_would(prices):
    folds = trailing_folds({"T.SA": prices}, settings())
    single = trailing_folds({"T.SA": prices}, settings(folds=1))
    assert folds[-1].splits == single[0].splits  # --folds 1 is the one training of old
    for earlier, later in itertools.pairwise(folds):
        # Each test block starts on the first target after the one before it.
        targets = later.series["T.SA"].targets
        after = targets[targets > earlier.splits.test[1]].min()
        assert later.splits.test[0] == after
        assert earlier.mask("test", "T.SA").sum() == 120
        # Each fold is trained and validated only on targets before its own test block.
        assert (
            later.splits.val[1] < later.splits.test[0]
            and later.splits.train[1] < later.splits.val[0]
        )
        assert later.splits.train[1] > earlier.splits.train[1]  # and on more of them than the last
    assert folds[-1].splits.test[1] == prices.index[-1]


def test_too_many_folds_say_how_many_samples_they_need(prices):
    with pytest.raises(DataError, match=r"40 folds of 120 test days.*use fewer --folds"):
        trailing_folds({"T.SA": prices}, settings(folds=40))


def test_yearly_folds_test_each_calendar_year_whole(prices):
    folds = yearly_folds({"T.SA": prices}, settings(), [2019, 2020, 2021])
    for year, dm in zip((2019, 2020, 2021), folds, strict=True):
        first, last = dm.splits.test
        assert (first.year, last.year) == (year, year)
        targets = dm.series["T.SA"].targets
        known = targets[~targets.isna()]
        assert dm.mask("test", "T.SA").sum() == (known.year == year).sum()
        assert dm.mask("val", "T.SA").sum() == 100


@pytest.fixture(scope="module")
def universe(prices) -> dict[str, pd.DataFrame]:
    """Three stocks on one calendar with their own gaps: one from 2015, one listed in September 2019,
    and one whose quotes froze for some weeks (zero-volume days, dropped)."""
    late = SyntheticSource(seed=4, first_date=date(2019, 9, 2), end=date(2021, 12, 30)).fetch(
        "L.SA", None
    )
    gappy = SyntheticSource(seed=5, first_date=date(2015, 1, 2), end=date(2021, 12, 30)).fetch(
        "G.SA", None
    )
    gappy = gappy.drop(gappy.index[(gappy.index >= "2020-06-01") & (gappy.index < "2020-08-01")])
    return {"T.SA": prices, "L.SA": late, "G.SA": gappy}


def test_no_training_window_of_any_ticker_reaches_its_folds_validation_or_test(universe):
    folds = trailing_folds(universe, settings())
    for dm in folds:
        (_, train_end), (val_start, val_end), (test_start, _) = (
            dm.splits.train,
            dm.splits.val,
            dm.splits.test,
        )
        assert train_end < val_start <= val_end < test_start
        for ticker, series in dm.series.items():
            trained = series.targets[dm.mask("train", ticker)]
            assert trained.max() < val_start, ticker
            # The scaler saw the ticker's rows up to the last training target, no later.
            assert pd.Timestamp(series.scaler.fitted_through) == train_end
            assert (series.targets[dm.mask("val", ticker)] < test_start).all(), ticker
        # The same dates for every ticker: a fold's blocks are the calendar's, not a stock's.
        for ticker in dm.tickers:
            tested = dm.series[ticker].targets[dm.mask("test", ticker)]
            assert tested.min() >= test_start and tested.max() <= dm.splits.test[1]


def test_a_ticker_too_young_for_a_fold_sits_it_out_and_is_named(universe):
    folds = trailing_folds(universe, settings())
    assert [dm.tickers for dm in folds][-1] == ["T.SA", "L.SA", "G.SA"]
    assert "L.SA" not in folds[0].tickers
    gaps = membership(folds)
    assert list(gaps) == ["L.SA"]
    assert gaps["L.SA"][0].startswith(f"fold 1 (test from {folds[0].splits.test[0]:%Y-%m-%d}): ")
    assert "training samples before" in gaps["L.SA"][0] and "100 needed" in gaps["L.SA"][0]


def test_each_ticker_is_scaled_by_its_own_training_rows_only(universe):
    (dm,) = trailing_folds(universe, settings(folds=1))
    poisoned = dict(universe)
    frame = universe["G.SA"].copy()
    later = frame.index >= dm.splits.val[0]
    frame.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] *= 40.0
    frame.loc[later, "Volume"] *= 1000
    poisoned["G.SA"] = frame
    (other,) = trailing_folds(poisoned, settings(folds=1))
    for ticker in universe:
        np.testing.assert_array_equal(
            other.series[ticker].scaler.mean, dm.series[ticker].scaler.mean
        )
    assert not np.array_equal(dm.series["G.SA"].scaler.mean, dm.series["T.SA"].scaler.mean)


def test_the_interval_score_is_the_width_plus_the_miss_times_two_over_alpha():
    actual = np.array([10.0, 12.5, 7.0])
    lower, upper = np.full(3, 9.0), np.full(3, 11.0)
    # Inside: the width; 1.5 above: 2 + 1.5 x 2 / 0.2; 2 below: 2 + 2 x 10.
    np.testing.assert_allclose(interval_scores(actual, lower, upper, 0.2), [2.0, 17.0, 22.0])


def test_the_pinball_loss_rewards_the_true_quantiles():
    rng = np.random.default_rng(0)
    actual = rng.normal(100, 2, 20000)
    levels = (0.1, 0.5, 0.9)
    true = np.tile(np.quantile(actual, levels), (len(actual), 1))
    for shift in (-0.5, 0.5):
        assert pinball_loss(actual, true, levels) < pinball_loss(actual, true + shift, levels)
    assert pinball_loss(actual, true, levels) < pinball_loss(actual, true * [1.02, 1, 0.98], levels)
