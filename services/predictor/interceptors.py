"""The one place where domain errors become gRPC status codes, and where RPCs are measured."""

from __future__ import annotations

import logging
import time

import grpc

from services.predictor.errors import ForecastError, InvalidInput, ModelNotFound, ModelNotReady
from services.predictor.metrics import PredictorMetrics

log = logging.getLogger(__name__)

STATUS_OF = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
}
GENERIC_MESSAGE = "internal error; the server log has the details"


class ErrorAndMetricsInterceptor(grpc.ServerInterceptor):
    """Wraps the unary methods of one service (not health or reflection).

    Domain errors become their status code with their message; anything else becomes
    INTERNAL with a generic message, and its traceback goes to the log. Either way the
    server keeps serving.
    """

    def __init__(self, metrics: PredictorMetrics, service: str):
        self.metrics = metrics
        self.prefix = f"/{service}/"

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method_path = handler_call_details.method
        if (
            handler is None
            or handler.unary_unary is None
            or not method_path.startswith(self.prefix)
        ):
            return handler
        method = method_path[len(self.prefix) :]
        behaviour = handler.unary_unary

        def measured(request, context):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            self.metrics.in_flight.inc()
            try:
                return behaviour(request, context)
            except ForecastError as exc:
                code = STATUS_OF.get(type(exc), grpc.StatusCode.INTERNAL)
                context.abort(code, str(exc))
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", method_path)
                context.abort(code, GENERIC_MESSAGE)
            finally:
                self.metrics.in_flight.dec()
                self.metrics.requests.labels(method, code.name).inc()
                self.metrics.latency.labels(method).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            measured,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
