"""The predictor's live scores are the offline evaluation's, on the same days: one step
ahead, from the same bars, the served model's interval and the classic one (EWMA 0.94)
scored by the same formulas the walk-forward benchmark reports."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import torch

from bench.classic import ewma
from services.core.features import FEATURES
from services.core.forecaster import ForecastModel, write_scalers
from services.core.model_card import DataLineage, ModelCard, TickerFit
from services.core.naming import ModelReference
from services.core.snapshots import Snapshot
from services.ingestion.sources import SyntheticSource
from services.predictor.artifacts import ModelIdentity
from services.predictor.metrics import PredictorMetrics
from services.predictor.realized import realized
from services.predictor.store import ModelStore
from trainer.data import PriceDataModule
from trainer.evaluate import evaluate
from trainer.export import export_onnx
from trainer.network import LSTMFactory

pytestmark = pytest.mark.unit

TICKER = "L.SA"
TRAINED_THROUGH = "2022-06-30"  # what the card claims: every later close is a live day
WINDOW = 60


@pytest.fixture(scope="module")
def prices():
    source = SyntheticSource(seed=11, first_date=date(2021, 1, 4), end=date(2022, 12, 29))
    return source.fetch(TICKER, None)


@pytest.fixture(scope="module")
def model(prices, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    dm = PriceDataModule({TICKER: prices}, window=10, val_days=40, test_days=40)
    dm.setup()
    torch.manual_seed(1)
    net = LSTMFactory(len(FEATURES), hidden_size=8)
    export_onnx(net, dm.subset("test").x, folder / "model.onnx")
    write_scalers(folder, {TICKER: dm.series[TICKER].scaler})
    fit = TickerFit(data=DataLineage(last_date=TRAINED_THROUGH))
    ModelCard(window=10, tickers={TICKER: fit}).write(folder)
    return ForecastModel(folder).for_ticker(TICKER)


def offline(model, prices, anchors):
    """The walk-forward benchmark's numbers for the model and for EWMA on ``anchors``."""
    start = prices.index.get_loc(anchors[0]) - model.bars_needed
    forecasts = model.forecast(prices.iloc[start:], anchors)
    rows = evaluate(
        prices,
        forecasts.anchor_dates,
        forecasts.actual,
        {"lstm": forecasts.prices, "EWMA 0.94": ewma(prices, forecasts.anchor_dates)},
        model.quantiles,
    )
    return rows, forecasts


def test_the_live_scores_are_the_offline_evaluation_s_on_the_same_days(model, prices):
    live = realized(model, prices, WINDOW)
    unseen = prices.index[prices.index >= TRAINED_THROUGH][:-1]
    anchors = unseen[-WINDOW:]
    rows, forecasts = offline(model, prices, anchors)
    assert live.days == WINDOW == len(forecasts.anchor_dates)
    assert live.coverage == pytest.approx(rows["lstm"]["coverage"], abs=1e-12)
    assert live.interval_score == pytest.approx(rows["lstm"]["interval_score_brl"], rel=1e-12)
    classic = rows["EWMA 0.94"]["interval_score_brl"]
    assert live.classic_interval_score == pytest.approx(classic, rel=1e-12)
    assert live.mae == pytest.approx(rows["lstm"]["mae_brl"], rel=1e-12)
    assert live.naive_mae == pytest.approx(rows["naive"]["mae_brl"], rel=1e-12)


def test_the_predictor_exports_them_as_soon_as_a_model_loads(model, prices):
    """Replayed from the prices at load: a restart or a new version starts with them."""
    metrics = PredictorMetrics()
    store = ModelStore({TICKER: ModelReference.for_ticker(TICKER)}, None, None, None, metrics)
    identity = ModelIdentity("lstm-L.SA", "1", "run1", "models:/lstm-L.SA@champion")
    snapshot = Snapshot(
        "s", TICKER, len(prices), "2021-01-04", "2022-12-29", "sha", "synthetic", True
    )
    store.serve(TICKER, identity, model, snapshot, prices)
    live = realized(model, prices, store.realized_window)
    for gauge, value in (
        (metrics.realized_coverage, live.coverage),
        (metrics.realized_interval_score, live.interval_score),
        (metrics.realized_classic_interval_score, live.classic_interval_score),
        (metrics.realized_days, live.days),
    ):
        assert gauge.labels(TICKER)._value.get() == value
    assert store.realized_window == WINDOW  # the chart's default, liveScoreDays
    assert np.isfinite(live.interval_score)
