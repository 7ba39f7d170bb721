"""Every training Job the chart can start carries one label, the one the retraining receiver
selects training Jobs by: the install's (pooled and Indexed), the receiver's own for alerts
and for the schedule. A receiver that missed one could start a training beside it. With the
receiver, the retraining CronJob only asks it: its own Jobs train nothing and must not carry
that label (the receiver would wait for its own asker forever)."""

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


def cron_jobs(docs: list[dict]) -> dict[str, dict]:
    """The Job template of each CronJob, by its container's name (train, request, ingest)."""
    found = {}
    for cron in by_kind(docs, "CronJob"):
        template = cron["spec"]["jobTemplate"]
        found[template["spec"]["template"]["spec"]["containers"][0]["name"]] = template
    return found


def startable_jobs(docs: list[dict]) -> dict[str, dict[str, str]]:
    """What each way of starting a training puts on the Job: its labels."""
    jobs = {"install": training_job(docs)["metadata"]["labels"]}
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
    assert "receiver scheduled.yaml" in jobs and any(k.endswith(".yaml") for k in jobs)
    missed = {way: labels for way, labels in jobs.items() if not selected(selector, labels)}
    assert missed == {}, f"the receiver's selector {selector} misses {missed}"
    assert {labels["app.kubernetes.io/component"] for labels in jobs.values()} == {"train"}
    crons = cron_jobs(docs)
    assert "train" not in crons  # the schedule asks the receiver, and trains nothing itself
    request = crons["request"]
    assert not selected(selector, request["metadata"]["labels"])
    assert not selected(selector, request["spec"]["template"]["metadata"]["labels"])


def test_the_scheduled_training_is_the_install_s_training(helm):
    """What the receiver starts on schedule trains what the install's Job trains, as it does."""
    docs = helm.template(
        "--set-json", f"tickers={TICKERS}", "--set", "trainer.schedule.enabled=true"
    )
    install = training_job(docs)["spec"]
    scheduled = named(docs, "ConfigMap", "-retrain-jobs")["data"]["scheduled.yaml"]
    spec = yaml.safe_load(scheduled)["spec"]
    assert spec.pop("ttlSecondsAfterFinished") == 86400  # finished, it goes; the install's stays
    assert spec == install


def test_without_the_receiver_the_cron_job_trains_itself(helm):
    docs = helm.template(
        "--set-json", f"tickers={TICKERS}",
        "--set", "trainer.schedule.enabled=true,retrainer.enabled=false",
    )  # fmt: skip
    (train,) = [t for name, t in cron_jobs(docs).items() if name == "train"]
    assert train["metadata"]["labels"]["app.kubernetes.io/component"] == "train"
    assert by_kind(docs, "ConfigMap") and not [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-retrain-jobs")
    ]
