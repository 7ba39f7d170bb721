"""The gRPC servicer: proto messages in, domain calls, proto messages out. Nothing else."""

from __future__ import annotations

from services.api import forecast_pb2, forecast_pb2_grpc
from services.predictor.dataplane import ModelDescription, Predictor
from services.predictor.forecasts import Forecast
from services.predictor.wire import history_of


def _model_ref(identity) -> forecast_pb2.ModelRef:
    return forecast_pb2.ModelRef(
        name=identity.name, version=identity.version, run_id=identity.run_id
    )


def forecast_to_proto(forecast: Forecast) -> forecast_pb2.ForecastResponse:
    return forecast_pb2.ForecastResponse(
        ticker=forecast.ticker,
        last_date=forecast.last_date.isoformat(),
        last_close=forecast.last_close,
        target_date=forecast.target_date.isoformat(),
        predicted_close=forecast.predicted_close,
        change_pct=forecast.change_pct,
        interval=forecast_pb2.PredictionInterval(
            lower=forecast.lower, upper=forecast.upper, level=forecast.level
        ),
        model=_model_ref(forecast.model),
        synthetic_data=forecast.synthetic_data,
    )


def description_to_proto(description: ModelDescription) -> forecast_pb2.ModelInfo:
    model = description.model
    if model is None:
        return forecast_pb2.ModelInfo(
            ticker=description.ticker,
            uri=description.uri,
            ready=False,
            not_ready_reason=description.not_ready_reason,
        )
    card, fit = model.card, model.fit
    return forecast_pb2.ModelInfo(
        ticker=description.ticker,
        model=_model_ref(description.identity),
        uri=description.uri,
        trained_at=card.trained_at,
        data_first_date=fit.data.first_date,
        data_last_date=fit.data.last_date,
        synthetic_data=fit.data.synthetic,
        window=card.window,
        min_history_bars=card.bars_needed,
        quantiles=card.quantiles,
        interval_level=card.interval_level,
        test_metrics=fit.finite_metrics("lstm"),
        naive_metrics=fit.finite_metrics("naive"),
        prices_last_date=description.prices_last_date,
        trained_on=card.trained_on or [description.ticker],
        ready=True,
    )


class ForecastServicer(forecast_pb2_grpc.ForecastServiceServicer):
    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def Forecast(self, request, context):  # noqa: N802 (gRPC's method name)
        history = history_of(request) if request.history else None
        return forecast_to_proto(self.predictor.forecast(request.ticker, history))

    def GetModelInfo(self, request, context):  # noqa: N802
        descriptions = self.predictor.describe(request.ticker)
        return forecast_pb2.ModelInfoResponse(
            models=[description_to_proto(d) for d in descriptions]
        )
