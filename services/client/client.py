"""A small, importable client of the predictor: the CLI, the tests and the benchmarks use it."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.api import forecast_pb2, forecast_pb2_grpc

Bar = forecast_pb2.Bar


class ForecastClient:
    """One channel to a predictor; use as a context manager or call ``close()``."""

    def __init__(
        self,
        target: str,
        timeout: float = 10.0,
        max_message_bytes: int = 4 * 1024 * 1024,
        round_robin: bool = False,
    ):
        """``round_robin`` spreads calls over every address the target resolves to (the
        chart's headless Service, as ``dns:///NAME:PORT``), instead of one connection."""
        self.target = target
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if round_robin:
            options.append(("grpc.lb_policy_name", "round_robin"))
        self.channel = grpc.insecure_channel(target, options=options)
        self.stub = forecast_pb2_grpc.ForecastServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def forecast(
        self,
        ticker: str,
        history: Iterable[forecast_pb2.Bar] | None = None,
        timeout: float | None = None,
    ) -> forecast_pb2.ForecastResponse:
        request = forecast_pb2.ForecastRequest(ticker=ticker, history=list(history or []))
        return self.stub.Forecast(request, timeout=timeout or self.timeout)

    def model_info(
        self, ticker: str = "", timeout: float | None = None
    ) -> forecast_pb2.ModelInfoResponse:
        return self.stub.GetModelInfo(
            forecast_pb2.ModelInfoRequest(ticker=ticker), timeout=timeout or self.timeout
        )

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """SERVING, NOT_SERVING, ... as the standard health service reports it."""
        response = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout or self.timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def is_serving(self, timeout: float = 1.0) -> bool:
        """True once grpc.health.v1 answers SERVING; False while unreachable or loading."""
        try:
            return self.health(timeout=timeout) == "SERVING"
        except grpc.RpcError:
            return False

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ForecastClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bars_from_frame(frame) -> list[forecast_pb2.Bar]:
    """Bars from a price frame indexed by date (as ``read_price_csv`` returns it)."""
    return [
        forecast_pb2.Bar(
            date=day.strftime("%Y-%m-%d"),
            open=row.Open,
            high=row.High,
            low=row.Low,
            close=row.Close,
            volume=row.Volume,
        )
        for day, row in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]
