"""petr4-retrain as a real process: Alertmanager's webhooks in, training Jobs out through a
real Kubernetes API server (the control plane of k8s/node/), as the chart's own ServiceAccount,
Role and RoleBinding allow it; what it asked the API, the server's audit log says."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid

import pytest

from scripts.harness.chart import Helm, named, training_job
from scripts.harness.processes import BIN, wait_until
from tests.helpers import tool_or_skip
from tests.integration.conftest import ReceiverCluster

pytestmark = pytest.mark.integration

TOKEN = "s3cret-shared-token"
TICKERS = ["PETR4.SA", "VALE3.SA"]


def render(namespace: str, *flags: str) -> list[dict]:
    helm = Helm(tool_or_skip("helm"))
    tickers = json.dumps(TICKERS)
    return helm.template("--set-json", f"tickers={tickers}", *flags, namespace=namespace)


def receiver_args(rendering: list[dict], cooldown: str) -> list[str]:
    """The receiver's flags, from the environment its Deployment gives it in the chart."""
    deployment = named(rendering, "Deployment", "-retrainer")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    return [
        *("--tickers", *TICKERS),
        *("--alert-names", *json.loads(env["PETR4_RETRAIN_ALERT_NAMES"])),
        *("--namespace", env["PETR4_RETRAIN_NAMESPACE"]),
        *("--template-configmap", env["PETR4_RETRAIN_TEMPLATE_CONFIGMAP"]),
        *("--job-selector", env["PETR4_RETRAIN_JOB_SELECTOR"]),
        *("--cooldown-seconds", cooldown),
    ]


@pytest.fixture
def cluster(control_plane, kube_namespace, tmp_path, request):
    """The chart's defaults (pooled); ``cooldown`` by indirect parametrization."""
    flags = getattr(request, "param", {}).get("flags", [])
    cooldown = getattr(request, "param", {}).get("cooldown", "86400")
    rendering = render(kube_namespace, *flags)
    args = receiver_args(rendering, cooldown)
    found = ReceiverCluster(control_plane, kube_namespace, rendering, tmp_path, TOKEN, args)
    try:
        found.receiver.start()
        yield found
    finally:
        found.receiver.stop()


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


def test_a_firing_alert_starts_the_charts_training_job(cluster):
    """Pooled, a ticker's model is the pooled one: the alert retrains the whole list."""
    status, answer = cluster.receiver.post(webhook(alert()), TOKEN)
    assert (status, outcomes(answer)) == (200, ["started"])
    (job,) = cluster.jobs()
    assert cluster.requests() == [
        ("get", "configmaps", 200),
        ("list", "jobs", 200),
        ("create", "jobs", 201),
    ]
    # The install's training Job, trained anew: the same pod as the API server defaults it,
    # under a generated name.
    install = training_job(cluster.rendering)
    install["metadata"]["name"] = f"dry-{uuid.uuid4().hex[:6]}"
    dry = json.loads(
        cluster.kube.kubectl(
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            stdin=json.dumps(install),
            namespace=cluster.namespace,
        )
    )
    assert job["spec"]["template"]["spec"] == dry["spec"]["template"]["spec"]
    assert job["metadata"]["name"].startswith("petr4-retrain-all-")
    labels = job["metadata"]["labels"]
    assert labels["petr4.io/covers"] == "all" and labels["petr4.io/trigger"] == "alert"
    assert job["metadata"]["annotations"]["petr4.io/alert"] == "Petr4RealizedMAEHigh"
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_no_second_job_while_one_runs_nor_within_the_cooldown(cluster):
    cluster.receiver.post(webhook(alert()), TOKEN)
    (job,) = cluster.jobs()
    status, answer = cluster.receiver.post(webhook(alert(), alert()), TOKEN)  # a storm of repeats
    assert (status, outcomes(answer)) == (200, ["active", "active"])
    status, answer = cluster.receiver.post(webhook(alert("VALE3.SA")), TOKEN)  # the same training
    assert (status, outcomes(answer)) == (200, ["active"])
    cluster.fail(job["metadata"]["name"])
    status, answer = cluster.receiver.post(webhook(alert()), TOKEN)
    assert (status, outcomes(answer)) == (200, ["cooldown"])
    assert len(cluster.jobs()) == 1


@pytest.mark.parametrize(
    "cluster", [{"flags": ["--set", "trainer.mode=per-ticker"]}], indirect=True
)
def test_per_ticker_each_alert_retrains_its_own_ticker(cluster):
    status, answer = cluster.receiver.post(webhook(alert()), TOKEN)
    assert (status, outcomes(answer)) == (200, ["started"])
    (job,) = cluster.jobs()
    assert job["metadata"]["name"].startswith("petr4-retrain-petr4-sa-")
    assert job["metadata"]["labels"]["petr4.io/covers"] == "petr4-sa"
    (train,) = job["spec"]["template"]["spec"]["containers"]
    assert train["command"][:3] == ["petr4-train", "--ticker", "PETR4.SA"]
    assert job["spec"]["completionMode"] == "NonIndexed"  # one ticker: an ordinary Job
    status, answer = cluster.receiver.post(webhook(alert("VALE3.SA")), TOKEN)  # tickers are apart
    assert outcomes(answer) == ["started"] and len(cluster.jobs()) == 2
    status, answer = cluster.receiver.post(webhook(alert()), TOKEN)
    assert outcomes(answer) == ["active"] and len(cluster.jobs()) == 2


@pytest.mark.parametrize("cluster", [{"cooldown": "0"}], indirect=True)
def test_after_the_cooldown_a_finished_training_may_be_followed(cluster):
    cluster.receiver.post(webhook(alert()), TOKEN)
    cluster.fail(cluster.jobs()[0]["metadata"]["name"])
    status, answer = cluster.receiver.post(webhook(alert()), TOKEN)
    assert (status, outcomes(answer)) == (200, ["started"]) and len(cluster.jobs()) == 2


def test_resolved_other_and_unknown_alerts_are_acknowledged_and_ignored(cluster):
    status, answer = cluster.receiver.post(
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
    assert cluster.requests() == []  # the cluster was not asked anything


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
    status, answer = cluster.receiver.post(body, token)
    assert status == code and error in answer["error"]
    assert cluster.requests() == []


def test_an_old_and_a_new_token_are_accepted_side_by_side_while_a_rotation_runs(cluster):
    token_file = cluster.receiver.token_file
    token_file.write_text(f"a-new-token\n{TOKEN}\n")  # the new one added, the old kept
    for token in ("a-new-token", TOKEN):
        status, _ = cluster.receiver.post(webhook(alert(status="resolved")), token)
        assert status == 200, token
    token_file.write_text("a-new-token\n")  # the old one gone
    status, answer = cluster.receiver.post(webhook(alert(status="resolved")), TOKEN)
    assert status == 401 and "a valid bearer token is required" in answer["error"]


def test_what_its_role_does_not_grant_the_api_server_refuses(cluster):
    """The receiver's account, as the chart binds it: Jobs yes, anything else no."""
    as_receiver = ["kubectl", "--kubeconfig", str(cluster.kubeconfig)]
    for refused in (
        ["get", "secrets"],
        ["delete", "job", "petr4-train"],
        ["get", "configmap", "petr4-tickers"],
    ):
        done = cluster.kube.run([*as_receiver, *refused], check=False)
        assert done.returncode != 0 and "Forbidden" in done.stderr, refused
    assert cluster.kube.run([*as_receiver, "get", "jobs"]).returncode == 0


def test_metrics_count_webhooks_by_outcome_and_jobs_started(cluster):
    cluster.receiver.post(webhook(alert()), TOKEN)
    cluster.receiver.post(webhook(alert()), "wrong")
    cluster.receiver.post(b"[]", TOKEN)
    text = urllib.request.urlopen(cluster.receiver.metrics_url).read().decode()
    for series, value in (
        ('petr4_retrain_webhooks_total{outcome="accepted"}', 1),
        ('petr4_retrain_webhooks_total{outcome="unauthorized"}', 1),
        ('petr4_retrain_webhooks_total{outcome="bad_request"}', 1),
        ('petr4_retrain_alerts_total{outcome="started"}', 1),
        ('petr4_retrain_jobs_started_total{ticker="PETR4.SA"}', 1),
    ):
        assert re.search(re.escape(series) + rf" {value}\.0\b", text), series


SCHEDULED = {"flags": ["--set", "trainer.schedule.enabled=true"]}


def scheduled_request(cluster, *, token_file=None) -> subprocess.Popen:
    """The retraining CronJob's container, as a process asking this receiver."""
    return subprocess.Popen(
        [
            str(BIN / "petr4-retrain-scheduled"),
            *("--url", cluster.receiver.url, "--poll-seconds", "0.2"),
            *("--token-file", str(token_file or cluster.receiver.token_file)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("cluster", [SCHEDULED], indirect=True)
def test_the_schedule_waits_for_an_alert_s_training_and_never_trains_beside_it(cluster):
    """The CronJob asks while an alert's training runs: it waits, starts the scheduled one
    once that ended, and an alert arriving then finds it running."""
    cluster.receiver.post(webhook(alert()), TOKEN)
    (alerted,) = cluster.jobs()
    request = scheduled_request(cluster)
    try:
        metrics = cluster.receiver.metrics_url
        wait_until(
            lambda: (
                'petr4_retrain_scheduled_requests_total{outcome="active"} 2.0'
                in urllib.request.urlopen(metrics).read().decode()
            ),
            60,
            "the scheduled request to be told twice that a training runs",
        )
        assert request.poll() is None and len(cluster.jobs()) == 1  # waiting, nothing started
        cluster.fail(alerted["metadata"]["name"])
        output, _ = request.communicate(timeout=60)
    finally:
        request.kill()
    assert request.returncode == 0, output
    scheduled = [j for j in cluster.jobs() if j["metadata"]["name"] != alerted["metadata"]["name"]]
    (job,) = scheduled
    assert f"started the scheduled training Job {job['metadata']['name']}" in output
    labels = job["metadata"]["labels"]
    assert (labels["petr4.io/trigger"], labels["petr4.io/covers"]) == ("schedule", "all")
    assert job["metadata"]["name"].startswith("petr4-retrain-scheduled-")
    status, answer = cluster.receiver.post(webhook(alert("VALE3.SA")), TOKEN)
    assert (status, outcomes(answer)) == (200, ["active"]) and len(cluster.jobs()) == 2


def test_without_a_scheduled_template_or_the_token_the_request_is_refused(cluster, tmp_path):
    """The chart's defaults render no scheduled training; a wrong token is refused before."""
    wrong = tmp_path / "wrong.token"
    wrong.write_text("wrong\n")
    for token_file, said in (
        (wrong, "HTTP 401: a valid bearer token is required"),
        (None, "HTTP 409: ConfigMap petr4-retrain-jobs has no scheduled training"),
    ):
        request = scheduled_request(cluster, token_file=token_file)
        output, _ = request.communicate(timeout=60)
        assert request.returncode == 1 and said in output, output
    assert cluster.jobs() == []
