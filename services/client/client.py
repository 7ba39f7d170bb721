"""A small, importable client of the predictor: the CLI, the tests and the benchmarks use it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.api import forecast_pb2, forecast_pb2_grpc
from services.core.tokens import TokenFile

Bar = forecast_pb2.Bar


@dataclass(frozen=True)
class Tls:
    """How the client speaks TLS: the CA that signed the server's certificate and, for
    mutual TLS, the client's own certificate and key; PEM files."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )


def read_token(path: Path) -> str:
    """The token to send: the first of a token file (one a line, as the server reads them)."""
    return TokenFile(path).first()


class ForecastClient:
    """One channel to a predictor; use as a context manager or call ``close()``."""

    def __init__(
        self,
        target: str,
        timeout: float = 10.0,
        max_message_bytes: int = 4 * 1024 * 1024,
        round_robin: bool = False,
        tls: Tls | None = None,
        token: str | None = None,
    ):
        """``round_robin`` spreads calls over every address the target resolves to (the
        chart's headless Service, as ``dns:///NAME:PORT``), instead of one connection.
        ``tls`` speaks TLS; ``token`` goes with every call as ``authorization: Bearer``."""
        self.target = target
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if round_robin:
            options.append(("grpc.lb_policy_name", "round_robin"))
        if tls is None:
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            self.channel = grpc.secure_channel(target, tls.credentials(), options=options)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.stub = forecast_pb2_grpc.ForecastServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def forecast(
        self,
        ticker: str,
        history: Iterable[forecast_pb2.Bar] | None = None,
        timeout: float | None = None,
    ) -> forecast_pb2.ForecastResponse:
        request = forecast_pb2.ForecastRequest(ticker=ticker, history=list(history or []))
        return self.stub.Forecast(request, timeout=timeout or self.timeout, metadata=self.metadata)

    def model_info(
        self, ticker: str = "", timeout: float | None = None
    ) -> forecast_pb2.ModelInfoResponse:
        return self.stub.GetModelInfo(
            forecast_pb2.ModelInfoRequest(ticker=ticker),
            timeout=timeout or self.timeout,
            metadata=self.metadata,
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
