"""petr4-retrain as a real process: Alertmanager's webhooks in, the Kubernetes API calls out.

The API is the stand-in of scripts/harness/kube_api.py (no API server can start here), fed
the chart's own rendering; every assertion is on the requests it recorded.
"""

from __future__ import annotations

import re
import urllib.request

import kubernetes_validate
import pytest

from scripts.harness.chart import Helm, named, training_job
from scripts.harness.kube_api import KubeApiStandIn
from scripts.harness.processes import RetrainerProcess
from tests.helpers import tool_or_skip

pytestmark = pytest.mark.integration

TOKEN = "s3cret-shared-token"
TICKERS = ["PETR4.SA", "VALE3.SA"]


def render(*flags: str) -> list[dict]:
    helm = Helm(tool_or_skip("helm"))
    return helm.template("--set-json", f"tickers={TICKERS}".replace("'", '"'), *flags)


@pytest.fixture(scope="module")
def rendering():
    """The chart's defaults: the tickers trained pooled."""
    return render()


def receiver_args(rendering: list[dict], cooldown: str) -> list[str]:
    """The receiver's flags, from the environment its Deployment gives it in the chart."""
    deployment = named(rendering, "Deployment", "-retrainer")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    return [
        "--tickers",
        *TICKERS,
        "--alert-name",
        env["PETR4_RETRAIN_ALERT_NAME"],
        "--namespace",
        env["PETR4_RETRAIN_NAMESPACE"],
        "--template-configmap",
        env["PETR4_RETRAIN_TEMPLATE_CONFIGMAP"],
        "--job-selector",
        env["PETR4_RETRAIN_JOB_SELECTOR"],
        "--cooldown-seconds",
        cooldown,
    ]


@pytest.fixture
def cluster(rendering, tmp_path, request):
    """The stand-in API and a receiver using it; ``cooldown`` by indirect parametrization."""
    api = KubeApiStandIn(rendering).start()
    cooldown = getattr(request, "param", "86400")
    receiver = RetrainerProcess(
        tmp_path,
        api.kubeconfig(tmp_path / "kubeconfig"),
        TOKEN,
        *receiver_args(rendering, cooldown),
    )
    try:
        receiver.start()
        yield api, receiver
    finally:
        receiver.stop()
        api.stop()


def webhook(*alerts: dict) -> dict:
    return {
        "version": "4",
        "groupKey": '{}:{ticker="PETR4.SA"}',
        "status": "firing",
        "receiver": "petr4-retrain",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def alert(ticker: str = "PETR4.SA", status: str = "firing", name: str = "Petr4RealizedMAEHigh"):
    return {
        "status": status,
        "labels": {"alertname": name, "ticker": ticker, "namespace": "forecast"},
        "annotations": {},
        "startsAt": "2026-11-27T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "0123456789abcdef",
    }


def outcomes(answer: dict) -> list[str]:
    return [o["outcome"] for o in answer["outcomes"]]


def test_a_firing_alert_starts_the_charts_training_job(cluster, rendering):
    """Pooled, a ticker's model is the pooled one: the alert retrains the whole list."""
    api, receiver = cluster
    status, answer = receiver.post(webhook(alert()), TOKEN)
    assert (status, outcomes(answer)) == (200, ["started"])
    (job,) = api.created()
    assert [m for m, _ in api.requests] == ["GET", "GET", "POST"]  # template, list, create
    for version in ("1.30.0", "1.37.0"):
        kubernetes_validate.validate(job, version, strict=True)
    # The install's training Job, trained anew: the same pod, under a generated name.
    assert job["spec"]["template"]["spec"] == training_job(rendering)["spec"]["template"]["spec"]
    assert job["metadata"]["name"].startswith("petr4-retrain-all-")
    labels = job["metadata"]["labels"]
    assert labels["petr4.io/covers"] == "all" and labels["petr4.io/trigger"] == "alert"
    assert job["metadata"]["annotations"]["petr4.io/alert"] == "Petr4RealizedMAEHigh"
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_no_second_job_while_one_runs_nor_within_the_cooldown(cluster):
    api, receiver = cluster
    receiver.post(webhook(alert()), TOKEN)
    (job,) = api.created()
    status, answer = receiver.post(webhook(alert(), alert()), TOKEN)  # a storm of repeats
    assert (status, outcomes(answer)) == (200, ["active", "active"])
    status, answer = receiver.post(webhook(alert("VALE3.SA")), TOKEN)  # the same training
    assert (status, outcomes(answer)) == (200, ["active"])
    api.finish(job["metadata"]["name"])
    status, answer = receiver.post(webhook(alert()), TOKEN)
    assert (status, outcomes(answer)) == (200, ["cooldown"])
    assert len(api.created()) == 1


@pytest.fixture
def per_ticker_cluster(tmp_path):
    rendering = render("--set", "trainer.mode=per-ticker")
    api = KubeApiStandIn(rendering).start()
    receiver = RetrainerProcess(
        tmp_path,
        api.kubeconfig(tmp_path / "kubeconfig"),
        TOKEN,
        *receiver_args(rendering, "86400"),
    )
    try:
        receiver.start()
        yield api, receiver
    finally:
        receiver.stop()
        api.stop()


def test_per_ticker_each_alert_retrains_its_own_ticker(per_ticker_cluster):
    api, receiver = per_ticker_cluster
    status, answer = receiver.post(webhook(alert()), TOKEN)
    assert (status, outcomes(answer)) == (200, ["started"])
    (job,) = api.created()
    kubernetes_validate.validate(job, "1.30.0", strict=True)
    assert job["metadata"]["name"].startswith("petr4-retrain-petr4-sa-")
    assert job["metadata"]["labels"]["petr4.io/covers"] == "petr4-sa"
    (train,) = job["spec"]["template"]["spec"]["containers"]
    assert train["command"][:3] == ["petr4-train", "--ticker", "PETR4.SA"]
    assert "completionMode" not in job["spec"]  # one ticker: an ordinary Job
    status, answer = receiver.post(webhook(alert("VALE3.SA")), TOKEN)  # tickers are apart
    assert outcomes(answer) == ["started"] and len(api.created()) == 2
    status, answer = receiver.post(webhook(alert()), TOKEN)
    assert outcomes(answer) == ["active"] and len(api.created()) == 2


@pytest.mark.parametrize("cluster", ["0"], indirect=True)
def test_after_the_cooldown_a_finished_training_may_be_followed(cluster):
    api, receiver = cluster
    receiver.post(webhook(alert()), TOKEN)
    api.finish(api.created()[0]["metadata"]["name"])
    status, answer = receiver.post(webhook(alert()), TOKEN)
    assert (status, outcomes(answer)) == (200, ["started"]) and len(api.created()) == 2


def test_resolved_other_and_unknown_alerts_are_acknowledged_and_ignored(cluster):
    api, receiver = cluster
    status, answer = receiver.post(
        webhook(
            alert(status="resolved"),
            alert(name="Petr4HighLatency"),
            alert(ticker="ITUB4.SA"),
            {"status": "firing", "labels": {"alertname": "Petr4RealizedMAEHigh"}},  # no ticker
        ),
        TOKEN,
    )
    assert status == 200
    assert outcomes(answer) == ["resolved", "other_alert", "unknown_ticker", "unknown_ticker"]
    assert api.requests == []  # the cluster was not asked anything


@pytest.mark.parametrize(
    ("body", "token", "code", "error"),
    [
        (webhook(alert()), None, 401, "a valid bearer token is required"),
        (webhook(alert()), "wrong", 401, "a valid bearer token is required"),
        (b"{not json", TOKEN, 400, "the body is not JSON"),
        (
            {"version": "3", "alerts": []},
            TOKEN,
            400,
            "expected an Alertmanager webhook payload of version 4",
        ),
        (
            {"version": "4", "alerts": [{"labels": "x"}]},
            TOKEN,
            400,
            "each with a status and labels",
        ),
    ],
)
def test_bad_calls_are_refused_and_create_nothing(cluster, body, token, code, error):
    api, receiver = cluster
    status, answer = receiver.post(body, token)
    assert status == code and error in answer["error"]
    assert api.requests == []


def test_metrics_count_webhooks_by_outcome_and_jobs_started(cluster):
    _, receiver = cluster
    receiver.post(webhook(alert()), TOKEN)
    receiver.post(webhook(alert()), "wrong")
    receiver.post(b"[]", TOKEN)
    text = urllib.request.urlopen(receiver.metrics_url).read().decode()
    for series, value in (
        ('petr4_retrain_webhooks_total{outcome="accepted"}', 1),
        ('petr4_retrain_webhooks_total{outcome="unauthorized"}', 1),
        ('petr4_retrain_webhooks_total{outcome="bad_request"}', 1),
        ('petr4_retrain_alerts_total{outcome="started"}', 1),
        ('petr4_retrain_jobs_started_total{ticker="PETR4.SA"}', 1),
    ):
        assert re.search(re.escape(series) + rf" {value}\.0\b", text), series
