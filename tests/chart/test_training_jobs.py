"""Every training Job the chart can start carries one label, the one the retraining receiver
selects training Jobs by: the install's (pooled and Indexed), the CronJob's, the receiver's own.
A receiver that missed one could start a training beside it."""

from __future__ import annotations

import json

import pytest
import yaml

from scripts.harness.chart import by_kind, named, training_job

pytestmark = pytest.mark.chart

TICKERS = json.dumps(["PETR4.SA", "VALE3.SA"])


def selected(selector: str, labels: dict[str, str]) -> bool:
    """An equality-based label selector (``a=b,c=d``), as the receiver sends it."""
    return all(labels.get(k) == v for k, v in (term.split("=", 1) for term in selector.split(",")))


def receiver_selector(docs: list[dict]) -> str:
    deployment = named(docs, "Deployment", "-retrainer")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    return env["PETR4_RETRAIN_JOB_SELECTOR"]


def startable_jobs(docs: list[dict]) -> dict[str, dict[str, str]]:
    """What each way of starting a training puts on the Job: its labels."""
    jobs = {"install": training_job(docs)["metadata"]["labels"]}
    for cron in by_kind(docs, "CronJob"):
        if (
            cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"]
            == "train"
        ):
            jobs["schedule"] = cron["spec"]["jobTemplate"]["metadata"]["labels"]
    templates = named(docs, "ConfigMap", "-retrain-jobs")["data"]
    for key, manifest in templates.items():
        jobs[f"receiver {key}"] = yaml.safe_load(manifest)["metadata"]["labels"]
    return jobs


@pytest.mark.parametrize("mode", ["pooled", "per-ticker"])
def test_the_receiver_selects_every_training_job_the_chart_can_start(helm, mode):
    docs = helm.template(
        "--set-json", f"tickers={TICKERS}",
        "--set", f"trainer.mode={mode},trainer.schedule.enabled=true",
    )  # fmt: skip
    selector = receiver_selector(docs)
    jobs = startable_jobs(docs)
    assert "schedule" in jobs and any(k.startswith("receiver") for k in jobs)
    missed = {way: labels for way, labels in jobs.items() if not selected(selector, labels)}
    assert missed == {}, f"the receiver's selector {selector} misses {missed}"
    assert {labels["app.kubernetes.io/component"] for labels in jobs.values()} == {"train"}
