"""petr4-retrain: the retraining receiver. Alertmanager posts its webhooks here (version 4);
a firing realized-error alert for a served ticker starts one training Job for it, made from
the chart's own template, unless one runs or ran within the cooldown.

  POST /alerts      Alertmanager's webhook, with the shared bearer token
  POST /scheduled   the retraining CronJob's turn: the whole list, unless a training runs
  GET  /healthz     liveness and readiness
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from services.core.logging import configure_logging
from services.core.settings import parse_settings
from services.retrainer.settings import RetrainSettings

log = logging.getLogger("services.retrainer")


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(RetrainSettings, argv, "petr4-retrain", __doc__)
    configure_logging(settings.log_level, settings.json_logs)
    from kubernetes import client, config

    from services.retrainer.jobs import JobLauncher
    from services.retrainer.metrics import RetrainMetrics
    from services.retrainer.webhook import Receiver, WebhookServer

    if settings.kubeconfig is None:
        config.load_incluster_config()
    else:
        config.load_kube_config(str(settings.kubeconfig))
    metrics = RetrainMetrics()
    launcher = JobLauncher(
        client.BatchV1Api(),
        client.CoreV1Api(),
        settings.namespace,
        settings.template_configmap,
        settings.job_selector,
        settings.cooldown_seconds,
    )
    receiver = Receiver(
        launcher, settings.tickers, settings.alert_names, settings.token_file, metrics
    )
    webhooks = WebhookServer((settings.host, settings.port), receiver, settings.max_body_bytes)
    scrapes = metrics.serve(settings.metrics_port, settings.host)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stopping.set())
    threading.Thread(target=webhooks.serve_forever, name="webhooks", daemon=True).start()
    log.info(
        "webhook on port %d (POST /alerts), metrics on port %d; %s for %s",
        webhooks.server_address[1],
        settings.metrics_port,
        ", ".join(settings.alert_names),
        ", ".join(settings.tickers),
    )
    stopping.wait()
    webhooks.shutdown()
    scrapes.shutdown()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
