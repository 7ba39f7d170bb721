"""Alertmanager's webhook, version 4: who may call it, what a valid body is, what each alert
asks for. A malformed body is 400 and a missing or wrong token 401, and neither touches the
cluster; a resolved alert, another alert or an unknown ticker is acknowledged and ignored.
The chart's retraining CronJob asks here too (POST /scheduled, the same token), so that one
process decides every training the release starts and never starts two at once."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from services.core.tokens import TokenFile, from_header
from services.retrainer.jobs import JobLauncher, Launch, TemplateMissing
from services.retrainer.metrics import RetrainMetrics

log = logging.getLogger(__name__)

PATH = "/alerts"
SCHEDULED_PATH = "/scheduled"
PATHS = f"POST {PATH} or {SCHEDULED_PATH}"


class BadRequest(ValueError):
    """The body is not an Alertmanager webhook payload of version 4."""


@dataclass(frozen=True)
class AlertOutcome:
    alertname: str
    ticker: str
    outcome: str  # started | active | cooldown | resolved | other_alert | unknown_ticker
    job: str = ""


def parse(body: bytes) -> list[dict]:
    """The alerts of a version 4 payload; BadRequest says what is wrong with anything else."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON ({exc})") from None
    if not isinstance(payload, dict) or payload.get("version") != "4":
        raise BadRequest("expected an Alertmanager webhook payload of version 4")
    alerts = payload.get("alerts")
    well_formed = isinstance(alerts, list) and all(
        isinstance(a, dict)
        and isinstance(a.get("status"), str)
        and isinstance(a.get("labels"), dict)
        for a in alerts
    )
    if not well_formed:
        raise BadRequest("alerts must be a list of objects, each with a status and labels")
    return alerts


class Receiver:
    """Turns firing alerts of one name into training Jobs, one ticker at a time."""

    def __init__(
        self,
        launcher: JobLauncher,
        tickers: list[str],
        alert_names: list[str],
        token_file: Path,
        metrics: RetrainMetrics,
    ):
        self.launcher = launcher
        self.tickers = set(tickers)
        self.alert_names = set(alert_names)
        self.tokens = TokenFile(token_file)  # several at once while a rotation is under way
        self.metrics = metrics

    def authorized(self, header: str | None) -> bool:
        """An accepted token, the file re-read when it changes: a rotated Secret takes effect."""
        return self.tokens.accepts(from_header(header))

    def handle(self, alerts: list[dict]) -> list[AlertOutcome]:
        outcomes = []
        for alert in alerts:
            labels = alert["labels"]
            name, ticker = str(labels.get("alertname", "")), str(labels.get("ticker", ""))
            job = ""
            if name not in self.alert_names:
                outcome = "other_alert"
            elif alert["status"] != "firing":
                outcome = "resolved"
            elif ticker not in self.tickers:
                outcome = "unknown_ticker"
            else:
                reason = {
                    "petr4.io/alert": name,
                    "petr4.io/alert-started-at": str(alert.get("startsAt", "")),
                }
                launch = self.launcher.request(ticker, reason)
                outcome, job = launch.outcome, launch.job
                if outcome == "started":
                    self.metrics.jobs_started.labels(ticker).inc()
            self.metrics.alerts.labels(outcome).inc()
            outcomes.append(AlertOutcome(name, ticker, outcome, job))
        return outcomes

    def scheduled(self) -> Launch:
        """The scheduled retraining, started unless a training runs (then: asked again later)."""
        launch = self.launcher.request_scheduled()
        self.metrics.scheduled.labels(launch.outcome).inc()
        if launch.outcome == "started":
            self.metrics.jobs_started.labels("all").inc()
        return launch


class WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookServer

    def do_GET(self):
        if self.path == "/healthz":
            self._answer(HTTPStatus.OK, {"status": "ok"})
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}; {PATHS}"})

    def do_POST(self):
        receiver, metrics = self.server.receiver, self.server.receiver.metrics
        if self.path not in (PATH, SCHEDULED_PATH):
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}; {PATHS}"})
            return
        if not receiver.authorized(self.headers.get("Authorization")):
            metrics.webhooks.labels("unauthorized").inc()
            self._answer(HTTPStatus.UNAUTHORIZED, {"error": "a valid bearer token is required"})
            return
        if self.path == SCHEDULED_PATH:
            self._scheduled()
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= self.server.max_body_bytes:
                raise BadRequest(
                    f"the body must be 1 to {self.server.max_body_bytes} bytes, not {length}"
                )
            alerts = parse(self.rfile.read(length))
        except (BadRequest, ValueError) as exc:
            metrics.webhooks.labels("bad_request").inc()
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        try:
            outcomes = receiver.handle(alerts)
        except Exception:  # the API server is away, say: Alertmanager retries on 5xx
            metrics.webhooks.labels("error").inc()
            log.exception("handling %d alerts failed", len(alerts))
            self._api_failed()
            return
        metrics.webhooks.labels("accepted").inc()
        self._answer(HTTPStatus.OK, {"outcomes": [asdict(o) for o in outcomes]})

    def _scheduled(self) -> None:
        try:
            launch = self.server.receiver.scheduled()
        except TemplateMissing as exc:
            self._answer(HTTPStatus.CONFLICT, {"error": str(exc)})
            return
        except Exception:
            log.exception("the scheduled retraining failed")
            self._api_failed()
            return
        self._answer(HTTPStatus.OK, {"outcome": launch.outcome, "job": launch.job})

    def _api_failed(self) -> None:
        """502, which Alertmanager and the scheduled request both answer by asking again."""
        self._answer(
            HTTPStatus.BAD_GATEWAY, {"error": "the Kubernetes API failed; the log has the details"}
        )

    def _answer(self, status: HTTPStatus, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: Receiver, max_body_bytes: int):
        self.receiver = receiver
        self.max_body_bytes = max_body_bytes
        super().__init__(address, WebhookHandler)
