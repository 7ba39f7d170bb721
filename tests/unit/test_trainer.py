from __future__ import annotations

from datetime import date

import lightning as L
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from services.core.features import FEATURES
from services.core.forecaster import Forecasts
from services.core.quantiles import Calibration, to_prices, to_return_quantiles
from services.ingestion.sources import SyntheticSource
from tests.helpers import predictable_prices
from trainer.data import DataError, PriceDataModule
from trainer.evaluate import baseline_forecasts, beats, evaluate, fit_calibration, point_metrics
from trainer.export import export_onnx
from trainer.module import LSTMLightModule, pinball_loss
from trainer.network import LSTMFactory
from trainer.registry import decide

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return SyntheticSource(seed=5, first_date=date(2019, 1, 2), end=date(2021, 12, 30)).fetch(
        "T.SA", None
    )


def small_dm(prices, **kwargs) -> PriceDataModule:
    options = {"window": 10, "val_days": 60, "test_days": 60, "batch_size": 32} | kwargs
    dm = PriceDataModule({"T.SA": prices}, **options)
    dm.setup()
    return dm


def test_splits_are_chronological_and_disjoint(prices):
    dm = small_dm(prices)
    (train_start, train_end), (val_start, val_end), (test_start, test_end) = (
        dm.splits.train,
        dm.splits.val,
        dm.splits.test,
    )
    assert train_start < train_end < val_start <= val_end < test_start <= test_end
    assert test_end == prices.index[-1]
    assert dm.mask("val", "T.SA").sum() == 60 and dm.mask("test", "T.SA").sum() == 60
    assert not (dm.mask("train", "T.SA") & dm.mask("val", "T.SA")).any()


def test_the_scaler_sees_no_validation_or_test_row(prices):
    dm = small_dm(prices)
    series = dm.series["T.SA"]
    assert pd.Timestamp(series.scaler.fitted_through) == dm.splits.train[1] < dm.splits.val[0]
    # Make every validation and test row absurd: a scaler that saw any of them would change.
    poisoned = prices.copy()
    later = poisoned.index >= dm.splits.val[0]
    poisoned.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] *= np.linspace(
        1, 50, later.sum()
    )[:, None]
    poisoned.loc[later, "Volume"] *= 1000
    other = small_dm(poisoned).series["T.SA"]
    np.testing.assert_array_equal(other.scaler.mean, series.scaler.mean)
    np.testing.assert_array_equal(other.scaler.scale, series.scaler.scale)
    assert other.center == series.center


def test_test_start_picks_the_test_year(prices):
    dm = small_dm(prices, test_start=date(2021, 1, 1), test_days=252)
    assert dm.splits.test[0] == pd.Timestamp("2021-01-04")
    assert dm.splits.test[0].year == dm.splits.test[1].year == 2021


def test_too_little_data_names_what_is_missing(prices):
    with pytest.raises(
        DataError, match=r"T.SA: \d+ samples with a known target; 252 test, 252 validation"
    ):
        PriceDataModule({"T.SA": prices.iloc[:300]}, window=60).setup()


def test_quantiles_come_out_sorted():
    torch.manual_seed(0)
    net = LSTMFactory(len(FEATURES), hidden_size=8, n_quantiles=5).eval()
    for scale in (0.1, 10.0, 1000.0):
        out = net(torch.randn(64, 12, len(FEATURES)) * scale)
        assert (out.diff(dim=1) >= 0).all()


def test_pinball_loss_is_minimised_at_each_columns_own_quantile():
    """Each output column's best constant is its own level's quantile of the targets: the
    loss fails this if it ignores the levels, swaps them, or is a squared error."""
    torch.manual_seed(0)
    target = torch.randn(20_000).exp()  # skewed, so mean, median and quantiles all differ
    levels = torch.tensor([0.1, 0.5, 0.9])
    grid = torch.linspace(0.0, 6.0, 601)
    for column, level in enumerate(levels):
        losses = []
        for value in grid:
            prediction = torch.zeros(len(target), 3)
            prediction[:, column] = value  # the other columns add a constant
            losses.append(pinball_loss(prediction, target, levels))
        best = grid[int(torch.stack(losses).argmin())]
        assert best == pytest.approx(float(torch.quantile(target, level)), abs=0.02), float(level)


def test_onnx_matches_torch(tmp_path):
    torch.manual_seed(1)
    net = LSTMFactory(len(FEATURES), hidden_size=16)
    sample = np.random.default_rng(0).normal(size=(32, 20, len(FEATURES))).astype(np.float32)
    difference = export_onnx(net, sample, tmp_path / "m.onnx")
    assert difference <= 1e-5
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    batch = np.random.default_rng(1).normal(size=(7, 20, len(FEATURES))).astype(np.float32)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(session.run(None, {"window": batch})[0], expected, atol=1e-5)


def test_lightning_module_runs_one_batch_of_every_stage(prices):
    dm = small_dm(prices)
    module = LSTMLightModule(n_features=len(FEATURES), hidden_size=8)
    trainer = L.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    assert torch.isfinite(trainer.callback_metrics["val_loss"])
    trainer.test(module, datamodule=dm, verbose=False)
    assert torch.isfinite(trainer.callback_metrics["test_mae"])


def test_training_learns_what_the_bars_tell_about_tomorrow():
    """Validation loss ends well below that of the best constant quantiles: the network used
    the bars, not only their average. One that learns nothing ends at or above it."""
    torch.manual_seed(0)
    dm = small_dm(predictable_prices(), val_days=150, test_days=100)
    module = LSTMLightModule(n_features=len(FEATURES), hidden_size=16, learning_rate=1e-2)
    trainer = L.Trainer(
        max_epochs=10,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    train_y = dm.train_dataloader().dataset.targets
    val_y = dm.val_dataloader().dataset.targets
    constant = torch.quantile(train_y, module.quantiles).expand(len(val_y), -1)
    constant_loss = float(pinball_loss(constant, val_y, module.quantiles))
    assert float(trainer.callback_metrics["val_loss"]) < 0.8 * constant_loss


def test_baselines_and_every_ratio_to_the_naive_mae(prices):
    close = prices["Close"]
    anchors = prices.index[10:60]
    baselines = baseline_forecasts(prices, anchors)
    np.testing.assert_array_equal(baselines["naive"], close.loc[anchors].to_numpy())
    np.testing.assert_allclose(baselines["ma5"], close.rolling(5).mean().loc[anchors])
    actual = close.shift(-1).loc[anchors].to_numpy()
    # A model that misses every close by exactly 10 centavos, up.
    model = (actual + 0.10)[:, None]
    rows = evaluate(prices, anchors, actual, {"model": model})
    naive_mae = np.mean(np.abs(np.diff(close.to_numpy()))[10:60])  # |tomorrow - today|
    assert rows["naive"]["mae_brl"] == pytest.approx(naive_mae)
    assert rows["model"]["mae_brl"] == pytest.approx(0.10)
    assert rows["model"]["mae_ratio_naive"] == pytest.approx(0.10 / naive_mae)
    ma5_mae = np.mean(np.abs(close.rolling(5).mean().loc[anchors].to_numpy() - actual))
    assert rows["ma5"]["mae_ratio_naive"] == pytest.approx(ma5_mae / naive_mae)
    assert np.isnan(rows["naive"]["directional_accuracy"])  # naive never predicts a move
    metrics = point_metrics(np.array([10.0, 10.0]), np.array([11.0, 9.0]), np.array([10.5, 10.5]))
    assert metrics["mae_brl"] == 1.0 and metrics["mape_pct"] == pytest.approx(10.0)
    assert metrics["directional_accuracy"] == 0.5


def test_the_gate_refuses_a_model_worse_than_naive_before_asking_the_registry():
    last_close = np.array([10.0, 10.0])
    evidence = Forecasts(
        anchor_dates=pd.DatetimeIndex(["2024-01-02", "2024-01-03"]),
        last_close=last_close,
        prices=np.array([[9.0, 11.1, 12.0], [9.0, 11.1, 12.0]]),
        actual=np.array([10.5, 10.5]),
    )
    decision = decide(None, "X.SA", evidence, None, (0.1, 0.5, 0.9))
    assert not decision.promote
    assert decision.reason == "MAE R$ 0.6000 is worse than the naive forecast's R$ 0.5000"


def test_shrinkage_falls_back_to_naive_without_significant_skill():
    rng = np.random.default_rng(0)
    n = 250
    volatility = np.full(n, 0.02)
    y = rng.normal(0, 0.02, n)
    last_close = np.full(n, 30.0)
    noise_only = np.column_stack([np.full(n, -1.3), rng.normal(0, 0.3, n), np.full(n, 1.3)])
    assert fit_calibration(noise_only, y, last_close, volatility, 0.8).shrink == 0.0
    informed = np.column_stack([np.full(n, -1.3), y / 0.02 * 0.8, np.full(n, 1.3)])
    assert fit_calibration(informed, y, last_close, volatility, 0.8).shrink > 0.5


def test_conformal_widening_covers_the_validation_level_in_any_regime():
    rng = np.random.default_rng(1)
    volatility = np.r_[np.full(1000, 0.01), np.full(1000, 0.03)]  # calm, then stormy
    y = rng.normal(0, 1, 2000) * volatility
    too_narrow = np.column_stack([np.full(2000, -0.2), np.zeros(2000), np.full(2000, 0.2)])
    calibration = fit_calibration(too_narrow, y, np.full(2000, 30.0), volatility, 0.8)
    q = to_return_quantiles(too_narrow, volatility, calibration)
    inside = (y >= q[:, 0]) & (y <= q[:, 2])
    assert inside.mean() == pytest.approx(0.8, abs=0.01)
    assert inside[:1000].mean() == pytest.approx(0.8, abs=0.04)  # in the calm half too
    assert inside[1000:].mean() == pytest.approx(0.8, abs=0.04)  # and in the stormy one


def test_pooled_shrinkage_weighs_every_ticker_by_its_own_naive_error():
    """Two tickers, one priced 20 times the other: in R$ the dear one's errors would decide
    alone. Relative to each one's naive MAE, the cheap one's clear skill counts as much."""
    rng = np.random.default_rng(2)
    n = 400
    volatility = np.full(2 * n, 0.02)
    y = rng.normal(0, 0.02, 2 * n)
    last_close = np.r_[np.full(n, 200.0), np.full(n, 10.0)]
    median = np.r_[rng.normal(0, 1.0, n), y[n:] / 0.02 * 0.9]  # noise for the dear one
    raw = np.column_stack([np.full(2 * n, -1.3), median, np.full(2 * n, 1.3)])
    groups = np.r_[np.zeros(n), np.ones(n)]
    in_brl = fit_calibration(raw, y, last_close, volatility, 0.8)
    relative = fit_calibration(raw, y, last_close, volatility, 0.8, groups)
    assert in_brl.shrink == 0.0 and relative.shrink > 0.0
    # One ticker alone: the same choice in R$ or relative to its naive MAE.
    alone = slice(n, 2 * n)
    one = fit_calibration(raw[alone], y[alone], last_close[alone], volatility[alone], 0.8)
    assert one == fit_calibration(
        raw[alone], y[alone], last_close[alone], volatility[alone], 0.8, groups[alone]
    )


def test_the_training_batches_are_the_windows_the_splits_hold(prices):
    """Windows gathered from the scaled rows by the batch are those a materialized split has."""
    later = prices.copy()
    later.index = later.index  # the same calendar, another stock
    later[["Open", "High", "Low", "Close", "Adj Close"]] *= 3.0
    dm = PriceDataModule({"T.SA": prices, "U.SA": later}, window=10, val_days=60, test_days=60)
    dm.setup()
    x, y = next(iter(DataLoader(dm._dataset("train"), 10_000, collate_fn=lambda b: b)))
    expected = dm.subset("train")
    np.testing.assert_array_equal(x.numpy(), expected.x)
    centers = np.r_[
        [dm.series["T.SA"].center] * int(dm.mask("train", "T.SA").sum()),
        [dm.series["U.SA"].center] * int(dm.mask("train", "U.SA").sum()),
    ]
    np.testing.assert_allclose(y.numpy(), expected.y / expected.volatility - centers, rtol=1e-6)


def test_what_a_training_covers_and_its_recipe():
    from trainer.settings import TrainSettings

    pooled = TrainSettings(tickers=["PETR4.SA", "VALE3.SA"])
    assert pooled.universe == ["PETR4.SA", "VALE3.SA"]
    assert (pooled.batch_size, pooled.patience) == (256, 3)  # the pooled recipe
    alone = TrainSettings(tickers=["PETR4.SA"])  # a pooled model of one is its own model
    assert alone.universe == ["PETR4.SA"] and (alone.batch_size, alone.patience) == (64, 10)
    assert alone == TrainSettings(ticker="PETR4.SA")
    picked = TrainSettings(tickers=["PETR4.SA", "VALE3.SA"], index=1)  # an Indexed Job's pod
    assert picked.universe == ["VALE3.SA"] and picked.batch_size == 64
    with pytest.raises(ValueError, match="--index 2 needs --tickers with more than 2 tickers"):
        TrainSettings(tickers=["PETR4.SA", "VALE3.SA"], index=2)


def test_a_gain_too_small_to_matter_keeps_the_naive_median():
    """On 20,000 validation days a median that knows a sliver of tomorrow beats naive
    "significantly" by well under 1 %: not enough to leave naive. A real gain is taken."""
    rng = np.random.default_rng(3)
    n = 20_000
    volatility = np.full(n, 0.02)
    y = rng.normal(0, 0.02, n)
    last_close = np.full(n, 30.0)
    sliver = np.column_stack([np.full(n, -1.3), 0.005 * y / 0.02, np.full(n, 1.3)])  # 0.5 %
    assert beats(
        *(
            to_prices(last_close, to_return_quantiles(sliver, volatility, Calibration(s, 0)))[:, 1]
            - last_close * np.exp(y)
            for s in (1.0, 0.0)
        )
    )  # significant, and yet:
    assert fit_calibration(sliver, y, last_close, volatility, 0.8).shrink == 0.0
    informed = np.column_stack([np.full(n, -1.3), 0.5 * y / 0.02, np.full(n, 1.3)])
    assert fit_calibration(informed, y, last_close, volatility, 0.8).shrink > 0.5
