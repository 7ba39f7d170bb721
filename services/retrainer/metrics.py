"""The retraining receiver's metrics, on their own registry and port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, start_http_server


class RetrainMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.webhooks = Counter(
            "petr4_retrain_webhooks",
            "webhook calls, by outcome: accepted, bad_request, unauthorized, error",
            ["outcome"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "petr4_retrain_alerts",
            "alerts received, by what came of them: started, active, cooldown, resolved, "
            "other_alert, unknown_ticker",
            ["outcome"],
            registry=self.registry,
        )
        self.scheduled = Counter(
            "petr4_retrain_scheduled_requests",
            "the retraining CronJob's requests, by what came of them: started, active",
            ["outcome"],
            registry=self.registry,
        )
        self.jobs_started = Counter(
            "petr4_retrain_jobs_started",
            "training Jobs started, by ticker (all: the whole list)",
            ["ticker"],
            registry=self.registry,
        )

    def serve(self, port: int, host: str = "0.0.0.0"):
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
