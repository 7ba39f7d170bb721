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
from trainer.walk_forward import trailing_folds, yearly_folds

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
    folds = trailing_folds(prices, settings())
    single = trailing_folds(prices, settings(folds=1))
    assert folds[-1].splits == single[0].splits  # --folds 1 is the one training of old
    for earlier, later in itertools.pairwise(folds):
        # Each test block starts on the first target after the one before it.
        after = later.targets[later.targets > earlier.splits.test[1]].min()
        assert later.splits.test[0] == after
        assert earlier.mask("test").sum() == 120
        # Each fold is trained and validated only on targets before its own test block.
        assert (
            later.splits.val[1] < later.splits.test[0]
            and later.splits.train[1] < later.splits.val[0]
        )
        assert later.splits.train[1] > earlier.splits.train[1]  # and on more of them than the last
    assert folds[-1].splits.test[1] == prices.index[-1]


def test_too_many_folds_say_how_many_samples_they_need(prices):
    with pytest.raises(DataError, match=r"40 folds of 120 test days.*use fewer --folds"):
        trailing_folds(prices, settings(folds=40))


def test_yearly_folds_test_each_calendar_year_whole(prices):
    folds = yearly_folds(prices, settings(), [2019, 2020, 2021])
    for year, dm in zip((2019, 2020, 2021), folds, strict=True):
        first, last = dm.splits.test
        assert (first.year, last.year) == (year, year)
        known = dm.targets[~dm.targets.isna()]
        assert dm.mask("test").sum() == (known.year == year).sum()
        assert dm.mask("val").sum() == 100


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
