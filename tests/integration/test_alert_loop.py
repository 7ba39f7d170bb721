"""The loop, closed: a predictor doing worse than naive, the chart's rule firing in a real
Prometheus, a real Alertmanager routing the alert as the chart's AlertmanagerConfig says, and
the retraining receiver creating the training Job through the Kubernetes API.

The API server is the control plane of k8s/node/; the receiver talks to it as the chart's
ServiceAccount. The cluster tier runs the same loop on the whole node.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import uuid
from datetime import date

import pytest
import yaml

from scripts.harness.chart import Helm, by_kind, named
from scripts.harness.monitoring import AlertmanagerServer, PrometheusServer
from scripts.harness.processes import PredictorProcess, free_port, wait_until
from services.core.naming import registered_model_name
from services.ingestion.sources import SyntheticSource
from tests.helpers import ingest_csv, register_crafted_model, server_or_skip, tool_or_skip
from tests.integration.conftest import ReceiverCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "loop-token"


def as_alertmanager_config(route: dict, token: str) -> dict:
    """The chart's AlertmanagerConfig as the Prometheus Operator writes it into Alertmanager's
    configuration: its route under the root one, with the operator's namespace matcher, its
    receiver with the Secret's token in place, the Service's name resolved to loopback."""
    spec = route["spec"]
    (receiver,) = spec["receivers"]
    (hook,) = receiver["webhookConfigs"]
    url = urllib.parse.urlsplit(hook["url"])
    matchers = [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in spec["route"]["matchers"]]
    return {
        "route": {
            "receiver": "none",
            "routes": [
                {
                    "receiver": receiver["name"],
                    "matchers": [*matchers, f'namespace="{route["metadata"]["namespace"]}"'],
                    "group_by": spec["route"]["groupBy"],
                    "group_wait": spec["route"]["groupWait"],
                    "group_interval": spec["route"]["groupInterval"],
                    "repeat_interval": spec["route"]["repeatInterval"],
                }
            ],
        },
        "receivers": [
            {"name": "none"},
            {
                "name": receiver["name"],
                "webhook_configs": [
                    {
                        "url": url._replace(netloc=f"127.0.0.1:{url.port}").geturl(),
                        "send_resolved": hook["sendResolved"],
                        "http_config": {
                            "authorization": {
                                "type": hook["httpConfig"]["authorization"]["type"],
                                "credentials": token,
                            }
                        },
                    }
                ],
            },
        ],
    }


def test_a_realized_error_alert_starts_a_training_job(
    mlflow_env, control_plane, kube_namespace, tmp_path, capsys
):
    ticker = f"L{uuid.uuid4().hex[:6].upper()}.SA"
    experiment = f"prices-{ticker}"
    prices = SyntheticSource(seed=13, first_date=date(2021, 1, 4), end=date(2023, 12, 29)).fetch(
        ticker, None
    )
    ingest_csv(ticker, experiment, prices, tmp_path / "prices.csv", mlflow_env)
    # Trained through November, it forecasts a three-volatility rise every day: December's
    # realized error is far above naive's.
    register_crafted_model(registered_model_name(ticker), prices, trained_through="2023-11-30")

    retrain_port = free_port()
    docs = Helm(tool_or_skip("helm")).template(
        "--set-json",
        f'tickers=["{ticker}"]',
        "--set",
        "monitoring.prometheusRule.realizedMaeFor=3s",  # the chart says 3d; the test cannot wait
        "--set",
        "retrainer.alertmanager.groupWait=1s,retrainer.alertmanager.groupInterval=1s",
        "--set",
        f"retrainer.port={retrain_port}",
        namespace=kube_namespace,
    )
    (rule,) = by_kind(docs, "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (route,) = by_kind(docs, "AlertmanagerConfig")
    env = {
        e["name"]: e["value"]
        for e in named(docs, "Deployment", "-retrainer")["spec"]["template"]["spec"]["containers"][
            0
        ]["env"]
    }

    predictor = PredictorProcess(
        tmp_path, mlflow_env, "--tickers", ticker, "--prices-experiment", experiment
    )
    cluster = ReceiverCluster(
        control_plane,
        kube_namespace,
        docs,
        tmp_path,
        TOKEN,
        [
            *("--tickers", ticker, "--namespace", kube_namespace),
            *("--template-configmap", env["PETR4_RETRAIN_TEMPLATE_CONFIGMAP"]),
            *("--job-selector", env["PETR4_RETRAIN_JOB_SELECTOR"]),
        ],
        port=retrain_port,  # the one the AlertmanagerConfig's URL names
    )
    receiver = cluster.receiver
    alertmanager = server_or_skip(
        lambda: AlertmanagerServer(tmp_path, as_alertmanager_config(route, TOKEN))
    )
    with contextlib.ExitStack() as running:
        for server in (receiver, alertmanager, predictor):
            running.callback(server.stop)
            server.start()
        predictor.wait_serving()
        crossed = time.monotonic()  # its first scrape already shows the error above naive's
        prometheus = server_or_skip(
            lambda: PrometheusServer(
                tmp_path,
                [f"127.0.0.1:{predictor.metrics_port}"],
                rule_files=[tmp_path / "rules.yaml"],
                labels={"namespace": kube_namespace},
                alertmanagers=[f"127.0.0.1:{alertmanager.port}"],
            )
        )
        running.callback(prometheus.stop)
        prometheus.start()
        wait_until(cluster.jobs, 90, "the training Job to be created", interval=0.2)
        seconds = time.monotonic() - crossed

    (job,) = cluster.jobs()
    assert job["metadata"]["labels"]["petr4.io/trigger"] == "alert"
    train = job["spec"]["template"]["spec"]["containers"][0]
    assert train["command"] == ["petr4-train"]  # pooled: the list, from the tickers ConfigMap
    variables = {e["name"]: e for e in train["env"]}
    ref = variables["PETR4_TRAIN_TICKERS"]["valueFrom"]["configMapKeyRef"]
    assert ticker in json.loads(named(docs, "ConfigMap", ref["name"])["data"][ref["key"]])
    with capsys.disabled():
        print(
            f"\nalert loop: metric above naive's to the Job created in {seconds:.1f} s "
            "(scrape 1 s, evaluation 1 s, for: 3s, Alertmanager group wait 1 s)"
        )
