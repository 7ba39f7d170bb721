"""The closed loop on the node, for real: the monitoring stack of k8s/node/ (the Prometheus
Operator, the Prometheus and Alertmanager it runs, kube-state-metrics) watching the release
through the chart's own ServiceMonitor, rules and AlertmanagerConfig.

A champion trained on PETR4.SA's real prices to mid-2024 serves. A volatility shock (the
next 60 days' moves five times their size) reaches it through the ingestion CronJob, from a
CSV ConfigMap: its live interval coverage falls, Petr4IntervalCoverageOff fires in Prometheus,
Alertmanager routes it to the receiver, which starts one training Job (and no second one while
it runs); the new version meets its gate or is refused with its reason, and the predictor
follows the alias if it moved. Each step's time is printed. Then the Job rules: a failed Job
alerts, a Job whose first pod was lost and whose retry succeeded does not; and every panel
of the dashboard has data.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scripts.check_cluster import panel_queries
from scripts.harness.chart import CHART
from scripts.harness.processes import free_port, http_ok, run_cli, wait_until
from services.core import tokens
from tests.helpers import SHARED_DATA
from tests.kube import NODE

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(3600)]

TICKER = "PETR4.SA"
TRAINED_THROUGH = "2024-06-28"
SHOCK_DAYS, SHOCK = 60, 5.0
VALUES = {
    "tickers": [TICKER],
    "ingestion": {"csvConfigMap": "loop-prices"},
    "trainer": {"extraArgs": ["--folds", "1", "--max-epochs", "2"]},
    "predictor": {"refreshSeconds": 5},
    "monitoring": {
        "serviceMonitor": {"interval": "5s"},
        "prometheusRule": {"liveScoresFor": "30s"},
    },
    "retrainer": {
        "cooldownSeconds": 0,
        "alertmanager": {"groupWait": "5s", "groupInterval": "10s"},
    },
}
SOURCE = "csv:/etc/petr4/prices/{ticker}.csv"


def prices_csv(shocked: bool) -> str:
    """PETR4.SA's real bars since 2015, to TRAINED_THROUGH; ``shocked``: with the next
    SHOCK_DAYS bars after it, every move (close to close, and within the day) SHOCK times
    its size."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real prices not found at {SHARED_DATA} (they live beside the project, not in it)"
        )
    bars = pd.read_csv(SHARED_DATA / f"{TICKER}.csv", index_col="Date", parse_dates=True)
    bars = bars[(bars["Volume"] > 0) & (bars.index >= "2015-01-01")]
    history = bars[bars.index <= TRAINED_THROUGH]
    if not shocked:
        return history.to_csv()
    live = bars[bars.index > TRAINED_THROUGH].iloc[:SHOCK_DAYS].copy()
    moves = np.log(live["Close"] / live["Close"].shift(1).fillna(history["Close"].iloc[-1]))
    close = history["Close"].iloc[-1] * np.exp(np.cumsum(SHOCK * moves))
    for column in ("Open", "High", "Low"):  # the same distance from the close, SHOCK times
        live[column] = close * (live[column] / live["Close"]) ** SHOCK
    live["Close"] = live["Adj Close"] = close
    return pd.concat([history, live]).to_csv()


def put_prices(kube, text: str, folder: Path) -> None:
    (folder / f"{TICKER}.csv").write_text(text)
    rendered = kube.kubectl(
        "create", "configmap", "loop-prices", f"--from-file={folder / f'{TICKER}.csv'}",
        "--dry-run=client", "-o", "yaml",
    )  # fmt: skip
    kube.kubectl("apply", "-f", "-", stdin=rendered)


class Prometheus:
    """The stack's Prometheus, through a port-forward of its Service."""

    def __init__(self, kube):
        self.port = free_port()
        self.forward = kube.forward("service/prometheus-operated", self.port, 9090, "monitoring")
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: http_ok(f"{self.url}/-/ready"), 60, "Prometheus' port-forward")

    def get(self, path: str, **params) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            return json.load(response)["data"]

    def value(self, expr: str) -> float | None:
        result = self.get("/api/v1/query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def firing(self, name: str) -> list[dict]:
        return [
            a["labels"] for a in self.get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == "firing"
        ]  # fmt: skip

    def close(self):
        self.forward.terminate()
        self.forward.wait()


@pytest.fixture(scope="module")
def monitoring(kube):
    done = subprocess.run([*NODE, "monitoring"], capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout + done.stderr
    return kube


@pytest.fixture(scope="module")
def release(monitoring, tmp_path_factory):
    """The release as `make deploy` installs it, its prices from the CSV ConfigMap."""
    kube = monitoring
    folder = tmp_path_factory.mktemp("prices")
    kube.empty_namespace()
    put_prices(kube, prices_csv(shocked=False), folder)
    kube.deploy(VALUES, folder, source=SOURCE)
    yield kube, folder
    kube.run(["helm", "-n", "forecast", "uninstall", "petr4", "--wait"], check=False)
    kube.run(["kubectl", "delete", "namespace", "forecast", "--wait"], check=False)


@pytest.fixture(scope="module")
def prometheus(monitoring):
    found = Prometheus(monitoring)
    yield found
    found.close()


def test_the_charts_monitoring_is_selected_and_loaded(release, prometheus):
    """The ServiceMonitor by its release label, its target up; the rules loaded."""

    def predictor_up() -> bool:
        targets = prometheus.get("/api/v1/targets")["activeTargets"]
        return any(
            t["labels"].get("job") == "petr4-predictor" and t["health"] == "up" for t in targets
        )

    wait_until(predictor_up, 180, "the predictor's target", interval=2)
    groups = {g["name"] for g in prometheus.get("/api/v1/rules")["groups"]}
    assert {"petr4-predictor", "petr4-model", "petr4-jobs"} <= groups


def test_a_volatility_shock_fires_the_alert_and_the_receiver_retrains(release, prometheus, capsys):
    kube, folder = release
    steps, started = {}, time.monotonic()

    def step(name: str) -> None:
        steps[name] = round(time.monotonic() - started, 1)

    put_prices(kube, prices_csv(shocked=True), folder)
    kube.kubectl("create", "job", "--from=cronjob/petr4-ingest", "shock")
    kube.kubectl("wait", "--for=condition=Complete", "job/shock", "--timeout=600s")
    assert f"{TICKER}: committed" in kube.kubectl("logs", "job/shock")
    step("shock committed by the ingestion CronJob")
    coverage = f'petr4_realized_coverage_ratio{{ticker="{TICKER}"}}'
    wait_until(
        lambda: (
            (prometheus.value(f'petr4_realized_days{{ticker="{TICKER}"}}') or 0) >= SHOCK_DAYS - 1
            and (prometheus.value(coverage) or 1.0) < 0.7
        ),
        300,
        "the live coverage to fall",
        interval=2,
    )
    step(f"coverage fell to {prometheus.value(coverage):.2f} in Prometheus")
    wait_until(lambda: prometheus.firing("Petr4IntervalCoverageOff"), 300, "the alert", interval=2)
    (labels,) = prometheus.firing("Petr4IntervalCoverageOff")
    assert (labels["ticker"], labels["namespace"]) == (TICKER, "forecast")
    step("Petr4IntervalCoverageOff firing")
    wait_until(
        lambda: kube.get("jobs", "-l", "petr4.io/trigger=alert")["items"],
        300,
        "the receiver's Job (Alertmanager, routed by the AlertmanagerConfig)",
        interval=2,
    )
    (job,) = kube.get("jobs", "-l", "petr4.io/trigger=alert")["items"]
    assert job["metadata"]["annotations"]["petr4.io/alert"] == "Petr4IntervalCoverageOff"
    step("training Job created by the receiver")
    # A second alert while it runs creates nothing.
    assert kube.post_alert("Petr4IntervalCoverageOff", TICKER) == "active"
    assert len(kube.get("jobs", "-l", "petr4.io/trigger=alert")["items"]) == 1
    name = job["metadata"]["name"]
    kube.kubectl("wait", "--for=condition=Complete", f"job/{name}", "--timeout=1200s")
    step("training Job complete")
    log = kube.kubectl("logs", f"job/{name}")
    assert "registered lstm-PETR4.SA version 2" in log, log[-2000:]
    moved = "alias 'champion' moved to it" in log
    if moved:  # the predictor follows the alias
        wait_until(lambda: served_version(kube, folder) == "2", 300, "v2 served", interval=5)
        step("predictor serves v2")
    else:
        assert "kept" in log or "worse than" in log, log[-2000:]  # refused, with its reason
        step("v2 refused by its gate; v1 serves on")
    with capsys.disabled():
        print("\nthe loop, seconds from the shock's ingestion:")
        for name, seconds in steps.items():
            print(f"  {seconds:7.1f}  {name}")


def served_version(kube, folder: Path) -> str:
    (folder / "ca.crt").write_bytes(kube.secret("petr4-predictor-tls", "ca.crt"))
    token = tokens.parse(kube.secret("petr4-predictor-tokens", "tokens").decode())[0]
    (folder / "token").write_text(token + "\n")
    port = free_port()
    forward = kube.forward("service/petr4-predictor", port, 50051)
    try:
        target = [
            "--target",
            f"localhost:{port}",
            "--tls-ca-file",
            "ca.crt",
            "--token-file",
            "token",
        ]
        for _ in range(30):
            done = run_cli(
                ["petr4-forecast", "--ticker", TICKER, "--json", *target], {}, cwd=folder
            )
            if done.returncode == 0:
                return json.loads(done.stdout)["model"]["version"]
            time.sleep(1)
        return ""
    finally:
        forward.terminate()
        forward.wait()


def job(kube, name: str, command: str, backoff: int) -> dict:
    """A Job the training rule watches (its name), running ``command`` in the release's
    trainer image."""
    cron = kube.get("cronjob", "petr4-ingest")
    image = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [
                        {
                            "name": "train",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", command],
                        }
                    ],
                }
            },
        },
    }


def test_a_failed_job_alerts_and_a_retried_one_does_not(release, prometheus):
    kube, _ = release
    kube.apply(
        [
            job(kube, "petr4-train-broken", "exit 1", 0),
            job(kube, "petr4-train-retried", "sleep 20", 1),
        ]
    )
    wait_until(
        lambda: kube.get(
            "pods", "-l", "job-name=petr4-train-retried", "--field-selector=status.phase=Running"
        )["items"],
        180,
        "the retried Job's first pod",
        interval=1,
    )
    kube.kubectl("delete", "pods", "-l", "job-name=petr4-train-retried", "--wait=false")
    kube.kubectl("wait", "--for=condition=Complete", "job/petr4-train-retried", "--timeout=300s")
    kube.kubectl("wait", "--for=condition=Failed", "job/petr4-train-broken", "--timeout=300s")
    wait_until(lambda: prometheus.firing("Petr4TrainingFailed"), 300, "the Job alert", interval=2)
    failed = {labels["job_name"] for labels in prometheus.firing("Petr4TrainingFailed")}
    assert failed == {"petr4-train-broken"}
    retried = prometheus.value('kube_job_status_failed{job_name="petr4-train-retried"}')
    assert retried == 1  # a pod was lost, and the Job still did not fail


def test_every_panel_of_the_dashboard_has_data(release, prometheus):
    kube, folder = release
    dashboard = json.loads((CHART / "dashboards" / "petr4.json").read_text())

    def filled() -> bool:
        served_version(kube, folder)  # a forecast between scrapes, so request rates exist
        return all(
            prometheus.get("/api/v1/query", query=query)["result"]
            for _, query in panel_queries(dashboard)
        )

    wait_until(filled, 300, "data in every panel", interval=5)
