"""Training Jobs started from the chart's own template, through the Kubernetes API.

The chart renders the Jobs a retraining may start into a ConfigMap, from the same template
as the install's training Job: one that retrains the whole ticker list (``all.yaml``, when
the tickers are trained pooled: a ticker's model is the pooled one), or one per ticker
(``<ticker>.yaml``). A retraining is that manifest, created under a generated name. Before
creating one the launcher asks the API which training Jobs cover the ticker (those of the
whole list, and its own): none may be running, and none may have started within the
cooldown. The scheduled retraining (``scheduled.yaml``, the whole list) is asked for by the
chart's CronJob and starts only where no training at all runs; the cooldown is not its
concern, since the user chose its hour.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import yaml

from services.core.naming import ticker_slug

log = logging.getLogger(__name__)

COVERS_LABEL = "petr4.io/covers"  # what a training Job trains: "all" tickers, or one's slug
EVERY_TICKER = "all"
TRIGGER_LABEL = "petr4.io/trigger"
SCHEDULED = "scheduled"  # the template key of the scheduled retraining


class TemplateMissing(LookupError):
    """The chart's template holds no Job for the ticker."""


@dataclass(frozen=True)
class Launch:
    """What asking for a training of one ticker came to."""

    outcome: str  # started | active | cooldown
    job: str = ""  # the Job's name: the one started, or the one in the way


class JobLauncher:
    """Starts training Jobs for tickers: one at a time per ticker, at most once per cooldown."""

    def __init__(
        self,
        batch_api,
        core_api,
        namespace: str,
        template_configmap: str,
        job_selector: str,
        cooldown_seconds: float,
    ):
        self.batch = batch_api
        self.core = core_api
        self.namespace = namespace
        self.template_configmap = template_configmap
        self.job_selector = job_selector
        self.cooldown_seconds = cooldown_seconds
        self._lock = threading.Lock()  # webhooks arrive on several threads; one decides at a time
        # what a Job covers ("all", or a ticker's slug) -> monotonic time of this process's
        # last start
        self._started: dict[str, float] = {}

    def request(self, ticker: str, reason: dict[str, str]) -> Launch:
        """Start a training of ``ticker`` unless one that covers it runs or ran within the
        cooldown."""
        with self._lock:
            key, manifest = self._template(ticker)
            jobs = [
                j
                for j in self.batch.list_namespaced_job(
                    self.namespace, label_selector=self.job_selector
                ).items
                if (j.metadata.labels or {}).get(COVERS_LABEL) in (EVERY_TICKER, key)
            ]
            running = [j for j in jobs if _running(j)]
            if running:
                return Launch("active", running[0].metadata.name)
            recent = [j for j in jobs if _age_seconds(j) < self.cooldown_seconds]
            if recent:
                return Launch("cooldown", recent[0].metadata.name)
            last = self._started.get(key)
            if last is not None and time.monotonic() - last < self.cooldown_seconds:
                return Launch("cooldown")
            job = yaml.safe_load(manifest)
            job["metadata"].setdefault("annotations", {}).update(reason)
            created = self.batch.create_namespaced_job(self.namespace, job)
            self._started[key] = time.monotonic()
            log.info("started training Job %s for %s (%s)", created.metadata.name, ticker, reason)
            return Launch("started", created.metadata.name)

    def request_scheduled(self) -> Launch:
        """Start the scheduled retraining unless a training, whatever started it, runs."""
        with self._lock:
            data = self._templates()
            if f"{SCHEDULED}.yaml" not in data:
                raise TemplateMissing(
                    f"ConfigMap {self.template_configmap} has no scheduled training "
                    "(the chart renders one with trainer.schedule.enabled)"
                )
            jobs = self.batch.list_namespaced_job(self.namespace, label_selector=self.job_selector)
            running = [j for j in jobs.items if _running(j)]
            if running:
                return Launch("active", running[0].metadata.name)
            created = self.batch.create_namespaced_job(
                self.namespace, yaml.safe_load(data[f"{SCHEDULED}.yaml"])
            )
            log.info("started the scheduled training Job %s", created.metadata.name)
            return Launch("started", created.metadata.name)

    def _templates(self) -> dict[str, str]:
        config_map = self.core.read_namespaced_config_map(self.template_configmap, self.namespace)
        return config_map.data or {}

    def _template(self, ticker: str) -> tuple[str, str]:
        """What retrains ``ticker`` (the whole list, or the ticker alone) and its manifest."""
        data = self._templates()
        for key in (EVERY_TICKER, ticker_slug(ticker)):
            if f"{key}.yaml" in data:
                return key, data[f"{key}.yaml"]
        raise TemplateMissing(
            f"ConfigMap {self.template_configmap} has no Job template for {ticker}"
        )


def _running(job) -> bool:
    status = job.status
    if status is None:
        return True  # just created: no status yet
    done = any(
        c.type in ("Complete", "Failed") and c.status == "True" for c in status.conditions or []
    )
    return not done and not status.completion_time


def _age_seconds(job) -> float:
    created = job.metadata.creation_timestamp
    if created is None:
        return 0.0
    if isinstance(created, str):
        created = datetime.fromisoformat(created.replace("Z", "+00:00"))
    return (datetime.now(UTC) - created).total_seconds()
