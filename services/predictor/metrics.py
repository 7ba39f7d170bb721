"""Every Prometheus metric of the predictor, on its own registry and port.

Names follow ``petr4_<what>_<unit>``; labels stay low-cardinality (method, code, ticker).
"""

from __future__ import annotations

from datetime import UTC, datetime

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
        self._certificate_expiry: Gauge | None = None
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
        self.interval_widening = Gauge(
            "petr4_interval_widening",
            "conformal widening of the latest forecast's interval, in units of the day's "
            "volatility (it adapts to each close when the model's calibration does)",
            ["ticker"],
            registry=r,
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
        self.realized_coverage = Gauge(
            "petr4_realized_coverage_ratio",
            "share of the window's closes inside the served interval (80 % aimed for)",
            ["ticker"],
            registry=r,
        )
        self.realized_interval_score = Gauge(
            "petr4_realized_interval_score_brl",
            "mean interval score (Winkler) of the served interval over the window, R$",
            ["ticker"],
            registry=r,
        )
        self.realized_classic_interval_score = Gauge(
            "petr4_realized_classic_interval_score_brl",
            "the same for the classic interval (naive +- EWMA(0.94) normal) on the same days, R$",
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

    def certificate_expires(self, timestamp: float) -> None:
        """The served certificate's expiry; the series exists only where TLS is on, so that
        its alert never reads a missing certificate as one that expired in 1970."""
        if self._certificate_expiry is None:
            self._certificate_expiry = Gauge(
                "petr4_tls_certificate_expiry_timestamp_seconds",
                "when the certificate the gRPC port serves expires (Unix time)",
                registry=self.registry,
            )
        self._certificate_expiry.set(timestamp)

    def served(self, state, previous=None) -> None:
        """A ticker's new state (a TickerState of the store), in place of ``previous``."""
        t = state.ticker
        if previous is not None and previous.identity != state.identity:
            old = previous.identity
            self.model_info.remove(t, old.name, old.version, old.run_id)
        new = state.identity
        self.model_info.labels(t, new.name, new.version, new.run_id).set(1)
        self.ready.labels(t).set(1)
        self.forecast_close.labels(t).set(state.latest.predicted_close)
        self.last_close.labels(t).set(state.latest.last_close)
        self.interval_widening.labels(t).set(state.widen_on(state.latest.last_date))
        last_day = datetime.combine(state.latest.last_date, datetime.min.time(), UTC)
        self.data_last_date.labels(t).set(last_day.timestamp())
        if state.realized is not None:
            self.realized_error.labels(t).set(state.realized.last_error)
            self.realized_mae.labels(t).set(state.realized.mae)
            self.realized_naive_mae.labels(t).set(state.realized.naive_mae)
            self.realized_days.labels(t).set(state.realized.days)
            self.realized_coverage.labels(t).set(state.realized.coverage)
            self.realized_interval_score.labels(t).set(state.realized.interval_score)
            classic = state.realized.classic_interval_score
            self.realized_classic_interval_score.labels(t).set(classic)
        self.data_age_of(state)

    def data_age_of(self, state) -> None:
        age = (datetime.now(UTC).date() - state.latest.last_date).days
        self.data_age.labels(state.ticker).set(age)
