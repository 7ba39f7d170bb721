"""The floor of Python gRPC on this machine: the same service, answering a constant.

Same proto, same thread pool, no interceptor, no work: whatever the predictor adds on
top of this is the predictor's cost.
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures

import grpc

from services.api import forecast_pb2, forecast_pb2_grpc

CONSTANT = forecast_pb2.ForecastResponse(
    ticker="PETR4.SA",
    last_date="2024-12-30",
    last_close=36.19,
    target_date="2025-01-02",
    predicted_close=36.19,
    change_pct=0.0,
    interval=forecast_pb2.PredictionInterval(lower=35.4, upper=37.0, level=0.8),
    model=forecast_pb2.ModelRef(name="lstm-PETR4.SA", version="1", run_id="0" * 32),
)


class ConstantForecaster(forecast_pb2_grpc.ForecastServiceServicer):
    def Forecast(self, request, context):  # noqa: N802
        return CONSTANT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    forecast_pb2_grpc.add_ForecastServiceServicer_to_server(ConstantForecaster(), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
