"""The universe on the chart, as containers: MLflow scaled out (two replicas on a real
PostgreSQL, artifacts in an S3-compatible store), three tickers trained as one pooled Job,
one MLflow replica killed in the middle of it, and the predictor serving all three.

Two replicas of one pod spec cannot share the host's network on one port, as two pods
share none on two IPs: each replica is the chart's own spec rendered with a port of its
own, behind a balancer on the Service's port that spreads connections as kube-proxy does
and skips an endpoint that is gone.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from scripts.harness.chart import job_named, named, one_host_flags, pod_spec, training_job
from scripts.harness.faults import TcpBalancer
from scripts.harness.pods import PodFailed
from scripts.harness.processes import free_port, run_cli, wait_until

pytestmark = [pytest.mark.containers, pytest.mark.slow]

TICKERS = ["PETR4.SA", "VALE3.SA", "ITUB4.SA"]
TRAINING = ["--max-epochs", "6", "--hidden-size", "16", "--champion-tolerance", "1"]


def render(helm, ports: dict, mlflow_port: int) -> list[dict]:
    return helm.template(
        *one_host_flags(ports | {"mlflow": mlflow_port}, TRAINING),
        "--set-json",
        f"tickers={str(TICKERS).replace(chr(39), chr(34))}",
        "--set",
        "mlflow.replicas=2,mlflow.backend.existingSecret=mlflow-db",
        "--set",
        "mlflow.artifacts.destination=s3://petr4-mlflow/artifacts,mlflow.artifacts.existingSecret=mlflow-s3",
    )


def admin_client(pod_host, uri: str, monkeypatch) -> MlflowClient:
    """MLflow's client as the chart's admin, from the admin's Secret. The URI is MLflow's for
    this test only: mlflow.set_tracking_uri would outlive it, in os.environ too."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for helpers that take no client
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv(
        "MLFLOW_TRACKING_PASSWORD", pod_host.secrets["petr4-mlflow-admin"]["password"]
    )
    return MlflowClient(uri, registry_uri=uri)


def test_the_universe_trains_through_a_lost_mlflow_replica_and_serves(
    images, helm, pod_host, postgres, object_store, tmp_path, monkeypatch
):
    database, _ = postgres
    keys, s3 = object_store
    ports = {"grpc": free_port(), "health": free_port(), "metrics": free_port()}
    service, replicas = free_port(), [free_port(), free_port()]
    release = render(helm, ports, service)  # what the jobs and the predictor see
    pod_host.use(release)
    pod_host.secrets |= {"mlflow-db": {"backend-store-uri": database}, "mlflow-s3": keys}

    pod_host.pod(
        "db-upgrade", pod_spec(job_named(release, "petr4-mlflow-db-upgrade"))
    ).start().wait(300)  # the pre-install hook: both schemas, once
    servers = []
    for n, port in enumerate(replicas):  # one after the other, as a rollout starts them
        spec = pod_spec(named(render(helm, ports, port), "Deployment", "-mlflow"))
        servers.append(pod_host.pod(f"mlflow-{n}", spec).start())
        servers[-1].wait_ready(180)
    service_address = TcpBalancer(*replicas, port=service)  # the Service's virtual address
    try:
        pod_host.pod(
            "accounts", pod_spec(job_named(release, "petr4-mlflow-accounts"))
        ).start().wait(300)
        client = admin_client(pod_host, f"http://127.0.0.1:{service}", monkeypatch)
        job = training_job(release)
        assert "completionMode" not in job["spec"]  # pooled: one Job, one pod, every ticker
        trainer = pod_host.pod("train", pod_spec(job)).start()

        def an_epoch_is_logged() -> bool:
            experiment = client.get_experiment_by_name("petr4-training")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            return bool(runs) and any(k.endswith("val_loss") for k in runs[0].data.metrics)

        wait_until(an_epoch_is_logged, 600, "the pooled training's first epoch")
        servers[0].remove()  # one replica lost mid-training, as with a node that goes away
        try:
            trainer.wait(1200)
            finished = True
        except PodFailed:
            finished = False
        versions = {t: client.search_model_versions(f"name = 'lstm-{t}'") for t in TICKERS}
        for ticker, found in versions.items():  # whatever came of it, no half-registered version
            for version in found:
                folder = mlflow.artifacts.download_artifacts(
                    f"models:/lstm-{ticker}/{version.version}", dst_path=str(tmp_path / ticker)
                )
                assert {"model.onnx", "scalers.json", "metadata.json"} <= {
                    p.name for p in Path(folder).iterdir()
                }
        assert finished, trainer.logs()[-4000:]  # and here it finished, through the other
        assert all(len(v) == 1 for v in versions.values())
        assert len({v[0].run_id for v in versions.values()}) == 1  # one pooled run
        assert s3.list_objects_v2(Bucket="petr4-mlflow")["KeyCount"] > 5  # in the object store

        predictor = pod_host.pod("predictor", pod_spec(named(release, "Deployment", "-predictor")))
        predictor.start().wait_ready(180)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics").read()
        assert re.search(rb"^petr4_loaded_models 1\.0$", metrics, re.M)  # one folder for all
        ca, token = pod_host.predictor_credentials(tmp_path)
        secured = ["--tls-ca-file", str(ca), "--token-file", str(token)]
        target = f"127.0.0.1:{ports['grpc']}"
        for ticker in TICKERS:
            args = ["petr4-forecast", "--target", target, "--ticker", ticker, *secured]
            answer = run_cli(args, {}, timeout=60)
            assert answer.returncode == 0 and f"lstm-{ticker} v1" in answer.stdout, answer.stderr
    finally:
        service_address.close()
