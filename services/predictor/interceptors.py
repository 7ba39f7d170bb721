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


def status_of(error: ForecastError) -> grpc.StatusCode:
    """The status of a domain error, or of the nearest kind it is one of."""
    for kind, status in STATUS_OF.items():
        if isinstance(error, kind):
            return status
    return grpc.StatusCode.INTERNAL


class ErrorAndMetricsInterceptor(grpc.ServerInterceptor):
    """Wraps the unary methods of one service (not health or reflection).

    Domain errors become their status code with their message; anything else becomes
    INTERNAL with a generic message, and its traceback goes to the log. Either way the
    server keeps serving. Each method is wrapped once, and its metrics' label sets are
    looked up once: this runs on every call.
    """

    def __init__(self, metrics: PredictorMetrics, service: str):
        self.metrics = metrics
        self.prefix = f"/{service}/"
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):
        method_path = handler_call_details.method
        if not method_path.startswith(self.prefix):
            return continuation(handler_call_details)
        wrapped = self._wrapped.get(method_path)
        if wrapped is None:
            handler = continuation(handler_call_details)
            if handler is None or handler.unary_unary is None:
                return handler
            wrapped = self._wrapped[method_path] = self._measured(method_path, handler)
        return wrapped

    def _measured(self, method_path: str, handler) -> grpc.RpcMethodHandler:
        method = method_path[len(self.prefix) :]
        behaviour, metrics = handler.unary_unary, self.metrics
        latency = metrics.latency.labels(method)
        answered: dict[grpc.StatusCode, object] = {}  # code -> its counter, made on first use

        def measured(request, context):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            metrics.in_flight.inc()
            try:
                return behaviour(request, context)
            except ForecastError as exc:
                code = status_of(exc)
                context.abort(code, str(exc))
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", method_path)
                context.abort(code, GENERIC_MESSAGE)
            finally:
                metrics.in_flight.dec()
                counter = answered.get(code)
                if counter is None:
                    counter = answered[code] = metrics.requests.labels(method, code.name)
                counter.inc()
                latency.observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            measured,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
