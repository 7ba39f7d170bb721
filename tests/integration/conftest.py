from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from scripts.harness.processes import PredictorProcess, RetrainerProcess, run_cli, wait_until
from services.ingestion.sources import SyntheticSource
from tests.helpers import SMALL_TRAINING, ingest_csv


@dataclass
class ServedModel:
    """A champion trained on a synthetic series, ready to serve."""

    ticker: str
    prices_experiment: str
    prices: pd.DataFrame
    csv: Path
    env: dict

    @property
    def name(self) -> str:
        return f"lstm-{self.ticker}"

    def serve_args(self, *extra: str) -> list[str]:
        return ["--tickers", self.ticker, "--prices-experiment", self.prices_experiment, *extra]


@pytest.fixture(scope="session")
def served_model(mlflow_server, tmp_path_factory) -> ServedModel:
    suffix = uuid.uuid4().hex[:6].upper()  # tickers are upper case
    ticker, experiment = f"S{suffix}.SA", f"prices-{suffix}"
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    prices = SyntheticSource(seed=21, first_date=date(2021, 1, 4), end=date(2023, 12, 29)).fetch(
        "S.SA", None
    )
    csv = tmp_path_factory.mktemp("served") / "prices.csv"
    ingest_csv(ticker, experiment, prices, csv, env)
    trained = run_cli(
        [
            "petr4-train",
            "--ticker",
            ticker,
            "--prices-experiment",
            experiment,
            "--experiment",
            f"training-{suffix}",
            *SMALL_TRAINING,
            "--champion-tolerance",
            "1.0",
        ],
        env,
    )
    assert trained.returncode == 0, trained.stderr
    assert "alias 'champion' moved to it" in trained.stdout
    return ServedModel(ticker, experiment, prices, csv, env)


@pytest.fixture(scope="module")
def predictor(served_model, tmp_path_factory):
    process = PredictorProcess(
        tmp_path_factory.mktemp("predictor"),
        served_model.env,
        *served_model.serve_args("--max-history-bars", "400"),
    )
    try:
        yield process.start().wait_serving()
    finally:
        process.stop()


@pytest.fixture(scope="session")
def control_plane():
    """A Kubernetes control plane of its own (etcd, the API server, the controller manager and
    the scheduler of k8s/node/, no kubelet): the receiver's tests talk to a real API server,
    RBAC and Job controller. It needs root, for its network namespace."""
    import os
    import subprocess

    from tests.kube import NODE, Kube, node_status

    if os.geteuid() != 0:
        pytest.skip("a control plane of k8s/node/ needs root (its network namespace)")
    name = "petr4-api"
    started = subprocess.run(
        [*NODE, "--name", name, "up", "--control-plane-only"],
        capture_output=True,
        text=True,
        timeout=1800,  # the first start on a machine builds the programs
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield Kube.of(node_status(name))
    finally:
        subprocess.run([*NODE, "--name", name, "down"], capture_output=True, timeout=300)


@pytest.fixture
def kube_namespace(control_plane, request):
    """A namespace of the control plane for one test, deleted after it."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", namespace, namespace="default")
    yield namespace
    control_plane.kubectl("delete", "namespace", namespace, "--wait=false", namespace="default")


RECEIVER = "petr4-retrainer"


class ReceiverCluster:
    """A namespace holding what the chart gives the receiver, and the receiver as that
    namespace's ServiceAccount."""

    def __init__(self, kube, namespace, rendering, tmp_path, token: str, args: list[str], port=0):
        self.kube, self.namespace, self.rendering = kube, namespace, rendering
        mine = [
            d
            for d in rendering
            if (d["kind"], d["metadata"]["name"])
            in {
                ("ServiceAccount", RECEIVER),
                ("Role", RECEIVER),
                ("RoleBinding", RECEIVER),
                ("ServiceAccount", "petr4-jobs"),
                ("ConfigMap", "petr4-retrain-jobs"),
                ("ConfigMap", "petr4-tickers"),
            }
        ]
        kube.apply(mine, namespace=namespace)
        self.kubeconfig = kube.token_kubeconfig(
            tmp_path / "receiver.kubeconfig", RECEIVER, namespace
        )
        self.receiver = RetrainerProcess(tmp_path, self.kubeconfig, token, *args, port=port)

    def jobs(self) -> list[dict]:
        return self.kube.get("jobs", namespace=self.namespace)["items"]

    def fail(self, name: str) -> None:
        """End a Job the way its controller does at its deadline (no kubelet runs its pod)."""
        patch = json.dumps({"spec": {"activeDeadlineSeconds": 1}})
        self.kube.kubectl(
            "patch", "job", name, "--type=merge", "-p", patch, namespace=self.namespace
        )
        self.kube.kubectl(
            "wait",
            "--for=condition=Failed",
            f"job/{name}",
            "--timeout=120s",
            namespace=self.namespace,
        )

    def requests(self) -> list[tuple[str, str, int]]:
        """What the receiver asked the API server so far, in order, from its audit log. A
        request of the same account made now, and refused, marks where the log ends."""
        marker = f"marker-{uuid.uuid4().hex[:8]}"
        self.kube.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "get", "configmap", marker],
            check=False,
        )
        user = f"system:serviceaccount:{self.namespace}:{RECEIVER}"

        def marked() -> list | None:
            events = self.kube.requests_by(user)
            return (
                events
                if (events and events[-1][1] == "configmaps" and events[-1][2] == 403)
                else None
            )

        wait_until(lambda: marked() is not None, 30, "the audit log's marker", interval=0.2)
        return [e for e in marked()[:-1] if not (e[1] == "configmaps" and e[2] == 403)]
