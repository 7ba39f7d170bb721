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
MALFORMED = object()  # what a payload that does not parse deserializes to
MALFORMED_LOG_SECONDS = 10.0  # at most one log line about malformed payloads this often


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
        self._malformed_logged = 0.0  # monotonic time of the last such line
        self._malformed_unlogged = 0

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

        parsed = getattr(
            getattr(handler.request_deserializer, "__self__", None), "DESCRIPTOR", None
        )
        message = parsed.name if parsed is not None else "request"
        malformed = metrics.malformed.labels(method)

        def deserialize(payload: bytes):
            # gRPC's own deserializer logs a six-line traceback for every bad payload: a
            # garbage-sending client would flood the log. Counted here, said in one line.
            try:
                return handler.request_deserializer(payload)
            except Exception:
                malformed.inc()
                self._note_malformed(method_path)
                return MALFORMED

        def measured(request, context):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            metrics.in_flight.inc()
            try:
                if request is MALFORMED:
                    raise InvalidInput(f"the request payload is not a {message} message")
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
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )

    def _note_malformed(self, method_path: str) -> None:
        """One log line now and then, with how many malformed payloads came since."""
        self._malformed_unlogged += 1
        now = time.monotonic()
        if now - self._malformed_logged >= MALFORMED_LOG_SECONDS:
            log.warning(
                "%d malformed request payloads (the latest for %s) in the last %.0f s; "
                "petr4_grpc_malformed_requests_total counts them all",
                self._malformed_unlogged,
                method_path,
                MALFORMED_LOG_SECONDS,
            )
            self._malformed_logged, self._malformed_unlogged = now, 0
