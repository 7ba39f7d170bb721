"""Every Prometheus metric of the predictor, on its own registry and port.

Names follow ``petr4_<what>_<unit>``; labels stay low-cardinality (method, code, ticker).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PredictorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "petr4_grpc_requests",
            "RPCs answered, by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "petr4_grpc_request_duration_seconds",
            "RPC handling time",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.auth = Counter(
            "petr4_grpc_auth_checks",
            "bearer-token checks of incoming calls (health is not checked), by outcome",
            ["outcome"],
            registry=r,
        )
        self.malformed = Counter(
            "petr4_grpc_malformed_requests",
            "requests whose payload is not the method's message, by method",
            ["method"],
            registry=r,
        )
        self.in_flight = Gauge(
            "petr4_grpc_requests_in_flight", "RPCs being handled now", registry=r
        )
        self.ready = Gauge(
            "petr4_model_ready", "1 when the ticker's model is loaded", ["ticker"], registry=r
        )
        self.loaded_models = Gauge(
            "petr4_loaded_models",
            "model folders loaded, one onnxruntime session each, however many tickers share one",
            registry=r,
        )
        self.model_info = Gauge(
            "petr4_model_info",
            "the served model version (value always 1)",
            ["ticker", "model_name", "model_version", "run_id"],
            registry=r,
        )
        self.forecast_close = Gauge(
            "petr4_forecast_close_brl",
            "latest forecast of the next close, R$",
            ["ticker"],
            registry=r,
        )
        self.last_close = Gauge(
            "petr4_last_close_brl", "latest actual close, R$", ["ticker"], registry=r
        )
        self.data_last_date = Gauge(
            "petr4_price_data_last_date_timestamp_seconds",
            "date of the latest bar (midnight UTC)",
            ["ticker"],
            registry=r,
        )
        self.data_age = Gauge(
            "petr4_price_data_age_days", "days since the latest bar", ["ticker"], registry=r
        )
        self.realized_error = Gauge(
            "petr4_realized_abs_error_brl",
            "absolute error of the latest forecast whose day has closed, R$",
            ["ticker"],
            registry=r,
        )
        self.realized_mae = Gauge(
            "petr4_realized_mae_brl",
            "rolling MAE of out-of-sample forecasts, R$",
            ["ticker"],
            registry=r,
        )
        self.realized_naive_mae = Gauge(
            "petr4_realized_naive_mae_brl",
            "rolling MAE of the naive forecast on the same days, R$",
            ["ticker"],
            registry=r,
        )
        self.realized_days = Gauge(
            "petr4_realized_days",
            "out-of-sample days in the rolling window",
            ["ticker"],
            registry=r,
        )
        self.model_load_errors = Counter(
            "petr4_model_load_errors",
            "failed looks up of the alias, and versions it named that failed their checks; "
            "the version before kept serving",
            ["ticker"],
            registry=r,
        )
        self.refresh_errors = Counter(
            "petr4_price_refresh_errors",
            "failed refreshes of the price snapshot",
            ["ticker"],
            registry=r,
        )

    def answered_total(self) -> float:
        return sum(
            s.value for m in self.requests.collect() for s in m.samples if s.name.endswith("_total")
        )

    def in_flight_now(self) -> float:
        return sum(s.value for m in self.in_flight.collect() for s in m.samples)

    def serve(self, port: int, host: str = "0.0.0.0"):
        """Expose /metrics over HTTP; returns the server so it can be shut down."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
