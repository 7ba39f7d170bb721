"""The predictor process: gRPC with health and reflection, metrics, loading, refresh, shutdown."""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from mlflow import MlflowClient

from services.api import forecast_pb2, forecast_pb2_grpc
from services.core.naming import ModelReference
from services.core.snapshots import SnapshotStore
from services.core.tokens import TokenFile
from services.predictor.dataplane import Predictor
from services.predictor.interceptors import ErrorAndMetricsInterceptor
from services.predictor.metrics import PredictorMetrics
from services.predictor.security import ServerTls, TokenInterceptor
from services.predictor.servicer import ForecastServicer
from services.predictor.settings import ServeSettings
from services.predictor.store import ModelStore

log = logging.getLogger(__name__)

SERVICE = forecast_pb2.DESCRIPTOR.services_by_name["ForecastService"].full_name
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


class StartupError(RuntimeError):
    """Models could not be loaded before the start-up deadline."""


class PredictorServer:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.metrics = PredictorMetrics()
        references = {
            t: ModelReference.for_ticker(t, settings.model_version, settings.model_alias)
            for t in settings.tickers
        }
        client = MlflowClient()
        self.store = ModelStore(
            references,
            client,
            SnapshotStore(client, settings.prices_experiment),
            settings.cache_dir,
            self.metrics,
            settings.realized_window,
            settings.load_workers,
        )
        self.predictor = Predictor(self.store, settings.max_history_bars)
        self.stopping = threading.Event()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        limits = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ]
        if settings.max_connection_age_seconds:  # GOAWAY, then the client reconnects
            limits += [
                ("grpc.max_connection_age_ms", round(settings.max_connection_age_seconds * 1000)),
                (
                    "grpc.max_connection_age_grace_ms",
                    round(settings.shutdown_grace_seconds * 1000),
                ),
            ]
        interceptors = [ErrorAndMetricsInterceptor(self.metrics, SERVICE)]
        if settings.token_file is not None:  # first: no token, nothing else runs
            interceptors.insert(0, TokenInterceptor(TokenFile(settings.token_file), self.metrics))
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="rpc"),
            interceptors=interceptors,
            options=limits,
        )
        forecast_pb2_grpc.add_ForecastServiceServicer_to_server(
            ForecastServicer(self.predictor), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self._set_health(NOT_SERVING)
        address = f"{settings.host}:{settings.grpc_port}"
        if settings.tls_cert_file is not None:
            tls = ServerTls(
                settings.tls_cert_file,
                settings.tls_key_file,
                settings.tls_client_ca_file,
                on_certificate=self.metrics.certificate_expires,
            )
            self.grpc_port = self.server.add_secure_port(address, tls.credentials())
        else:
            self.grpc_port = self.server.add_insecure_port(address)
        # The same health states, in plaintext and alone, for probes that speak nothing else.
        self.health_server = None
        if settings.health_port is not None:
            self.health_server = grpc.server(futures.ThreadPoolExecutor(2, "health"))
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            self.health_port = self.health_server.add_insecure_port(
                f"{settings.host}:{settings.health_port}"
            )
        self._metrics_http = None
        self._refresher = threading.Thread(target=self._refresh_loop, name="refresh", daemon=True)

    def _set_health(self, status) -> None:
        self.health.set("", status)
        self.health.set(SERVICE, status)

    def start(self) -> None:
        """Open both ports at once: probes and scrapes work while models load."""
        self._metrics_http = self.metrics.serve(
            self.settings.metrics_port, self.settings.host.strip("[]")
        )
        self.server.start()
        if self.health_server is not None:
            self.health_server.start()
        log.info(
            "gRPC on port %d (%s%s), metrics on port %d%s; NOT_SERVING until models load",
            self.grpc_port,
            "TLS" if self.settings.tls_cert_file else "plaintext",
            ", bearer tokens" if self.settings.token_file else "",
            self.settings.metrics_port,
            f", health alone on port {self.health_port}" if self.health_server else "",
        )

    def load(self) -> None:
        """Load every ticker that can be served, retrying with backoff while none can (MLflow
        or the registry not there yet); SERVING once the first pass served at least one.
        The tickers that could not load are tried again at every refresh."""
        deadline = time.monotonic() + self.settings.startup_timeout_seconds
        delay = 1.0
        while not self.stopping.is_set():
            try:
                self.store.load()
                problem = "no ticker could be served: " + "; ".join(
                    f"{t}: {self.store.problem(t)}" for t in self.store.tickers
                )
            except Exception as exc:  # MLflow down: worth a retry until the deadline
                problem = f"MLflow could not be asked: {type(exc).__name__}: {exc}"
            if self.store.serving:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartupError(
                    f"models not loaded after {self.settings.startup_timeout_seconds:.0f} s: "
                    f"{problem}"
                )
            log.warning("%s; retrying in %.0f s", problem, min(delay, remaining))
            self.stopping.wait(min(delay, remaining))
            delay = min(delay * 2, 30.0)
        if self.store.serving:
            self._set_health(SERVING)
            self._refresher.start()
            waiting = [t for t in self.store.tickers if self.store.problem(t)]
            log.info(
                "SERVING %s%s",
                ", ".join(self.store.serving),
                f"; not yet {', '.join(waiting)}" if waiting else "",
            )

    def _refresh_loop(self) -> None:
        while not self.stopping.wait(self.settings.refresh_seconds):
            try:
                self.store.refresh()
            except Exception:  # MLflow away: what serves keeps serving
                log.exception("refresh failed; still serving what was loaded")

    def stop(self) -> None:
        """NOT_SERVING first, so load balancers stop sending; then let accepted RPCs finish."""
        self.stopping.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(self.settings.shutdown_grace_seconds).wait()
        if self.health_server is not None:
            self.health_server.stop(0).wait()
        log.info(
            "stopped: %d RPCs answered, %d in flight",
            self.metrics.answered_total(),
            self.metrics.in_flight_now(),
        )
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
