"""The servicer and core without a network: proto in, domain errors or proto out."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import torch

from services.api import forecast_pb2
from services.client.client import bars_from_frame
from services.core.features import FEATURES
from services.core.forecaster import ForecastModel, write_scalers
from services.core.model_card import DataLineage, ModelCard, TickerFit
from services.core.naming import ModelReference
from services.core.snapshots import Snapshot
from services.ingestion.sources import SyntheticSource
from services.predictor.artifacts import ModelIdentity
from services.predictor.dataplane import Predictor
from services.predictor.errors import InvalidInput, ModelNotFound, ModelNotReady
from services.predictor.metrics import PredictorMetrics
from services.predictor.servicer import ForecastServicer
from services.predictor.store import ModelStore
from trainer.data import PriceDataModule
from trainer.export import export_onnx
from trainer.network import LSTMFactory

pytestmark = pytest.mark.unit

TICKER = "U.SA"


@pytest.fixture(scope="module")
def prices():
    return SyntheticSource(seed=4, first_date=date(2021, 1, 4), end=date(2022, 12, 29)).fetch(
        TICKER, None
    )


@pytest.fixture(scope="module")
def model(prices, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    dm = PriceDataModule({TICKER: prices}, window=10, val_days=40, test_days=40)
    dm.setup()
    torch.manual_seed(0)
    export_onnx(
        LSTMFactory(len(FEATURES), hidden_size=8), dm.subset("test").x, folder / "model.onnx"
    )
    write_scalers(folder, {TICKER: dm.series[TICKER].scaler})
    fit = TickerFit(
        data=DataLineage(last_date="2022-12-29"),
        metrics={"lstm": {"mae_brl": 0.5}, "naive": {"mae_brl": 0.5}},
    )
    ModelCard(window=10, tickers={TICKER: fit}).write(folder)
    return ForecastModel(folder).for_ticker(TICKER)


@pytest.fixture
def servicer(model, prices):
    store = ModelStore(
        {TICKER: ModelReference.for_ticker(TICKER)}, None, None, None, PredictorMetrics()
    )
    identity = ModelIdentity("lstm-U.SA", "3", "run3", "models:/lstm-U.SA@champion")
    snapshot = Snapshot(
        "snap", TICKER, len(prices), "2021-01-04", "2022-12-29", "sha", "synthetic", True
    )
    store.serve(TICKER, identity, model, snapshot, prices)
    return ForecastServicer(Predictor(store))


def request(ticker=TICKER, history=()):
    return forecast_pb2.ForecastRequest(ticker=ticker, history=list(history))


def test_latest_forecast_is_converted_whole(servicer, model, prices):
    response = servicer.Forecast(request(), None)
    expected = model.forecast(prices)
    assert response.ticker == TICKER and response.synthetic_data
    assert response.last_date == "2022-12-29" and response.target_date == "2023-01-02"
    assert response.predicted_close == pytest.approx(expected.median[-1])
    assert response.interval.lower <= response.predicted_close <= response.interval.upper
    assert response.model == forecast_pb2.ModelRef(name="lstm-U.SA", version="3", run_id="run3")


def test_history_forecast_uses_only_the_given_bars(servicer, model, prices):
    window = prices.iloc[-120:-50]
    response = servicer.Forecast(request(history=bars_from_frame(window)), None)
    assert response.last_date == window.index[-1].strftime("%Y-%m-%d")
    assert response.predicted_close == pytest.approx(model.forecast(window).median[-1])
    assert not np.isclose(
        response.predicted_close, servicer.Forecast(request(), None).predicted_close
    )


def test_model_info(servicer):
    (info,) = servicer.GetModelInfo(forecast_pb2.ModelInfoRequest(), None).models
    assert info.min_history_bars == 70 and info.window == 10  # plus 60 of warm-up
    assert info.test_metrics["mae_brl"] == 0.5 and info.prices_last_date == "2022-12-29"
    assert info.ready and list(info.trained_on) == [TICKER]


def test_errors_are_domain_errors(servicer, prices):
    with pytest.raises(InvalidInput, match="ticker is required"):
        servicer.Forecast(request(ticker=""), None)
    with pytest.raises(ModelNotFound, match=r"no model serves ticker 'X\.SA'"):
        servicer.Forecast(request(ticker="X.SA"), None)
    with pytest.raises(
        InvalidInput, match="history has 5 usable bars; the model needs at least 70"
    ):
        servicer.Forecast(request(history=bars_from_frame(prices.iloc[-5:])), None)


def test_not_ready_until_loaded():
    store = ModelStore(
        {TICKER: ModelReference.for_ticker(TICKER)}, None, None, None, PredictorMetrics()
    )
    assert store.serving == []
    with pytest.raises(ModelNotReady, match=r"U\.SA is not served yet: still loading"):
        ForecastServicer(Predictor(store)).Forecast(request(), None)
    (info,) = (
        ForecastServicer(Predictor(store))
        .GetModelInfo(forecast_pb2.ModelInfoRequest(), None)
        .models
    )
    assert not info.ready and info.not_ready_reason == "still loading"
    assert info.uri == "models:/lstm-U.SA@champion"
