"""The whole system on a real cluster: K3s in Docker, the three images, the README's commands.

It skips, saying why, where no Docker daemon answers or where K3s's image cannot be pulled
(no image registry answers). Where both work, it needs the network only for that image;
the prices are synthetic.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scripts import kube_tools
from scripts.check_cluster import start_caller, stop_caller
from scripts.harness.chart import CHART, readme_command
from scripts.harness.processes import free_port, http_ok, wait_until
from tests.helpers import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

K3S_IMAGE = "rancher/k3s:v1.31.4-k3s1"
NAMESPACE = "forecast"
TICKER = "PETR4.SA"
# What a laptop's kind cluster gets from skaffold, here given by flags: images already in
# containerd, the synthetic series (no Yahoo), a short training. K3s has no monitoring CRDs:
# the chart must see that for itself, as on a fresh kind cluster.
CLUSTER_FLAGS = [
    "--set",
    "images.trainer.pullPolicy=Never,images.predictor.pullPolicy=Never,mlflow.image.pullPolicy=Never",
    "--set",
    "ingestion.source=synthetic",
    "--set-json",
    'trainer.extraArgs=["--max-epochs","3","--champion-tolerance","1"]',
]


def docker_or_skip():
    """The Docker client, once K3s's image is there; a skip saying why where it cannot be, or
    a failure where $PETR4_E2E_REQUIRED says this machine must run the tier (the forge's CI)."""
    import docker

    skip = pytest.fail if os.environ.get("PETR4_E2E_REQUIRED") else pytest.skip
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        skip(f"no Docker daemon answers ({exc}); e2e needs one for images and K3s")
    try:
        client.images.pull(K3S_IMAGE)
    except docker.errors.APIError as exc:
        skip(f"K3s's image {K3S_IMAGE} cannot be pulled: no image registry answers ({exc})")
    return client


class Cluster:
    """helm and kubectl against the K3s cluster, run as the README runs them."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = str(kubeconfig)
        self.helm_bin = str(kube_tools.locate("helm"))
        self.kubectl_bin = str(kube_tools.locate("kubectl"))

    def run(self, command: list[str], timeout: float = 1800, stdin: str | None = None) -> str:
        binary = {"helm": self.helm_bin, "kubectl": self.kubectl_bin}[command[0]]
        # The README names the chart by its path from the repository's root.
        args = [str(CHART) if word == "charts/petr4" else word for word in command[1:]]
        done = subprocess.run(
            [binary, "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, " ".join(command) + "\n" + done.stdout + done.stderr
        return done.stdout

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.run(["kubectl", "-n", NAMESPACE, *args], stdin=stdin)

    def forward(self, port: int, service: str = "petr4-predictor", remote: int = 50051):
        forward = ["port-forward", f"service/{service}", f"{port}:{remote}"]
        return subprocess.Popen(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, "-n", NAMESPACE, *forward],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    client = docker_or_skip()
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # its image may not be there
    from testcontainers.community.k3s import K3SContainer

    built = subprocess.run([sys.executable, str(REPO / "scripts" / "build_images.py")], cwd=REPO)
    assert built.returncode == 0, "the images did not build"
    root = tmp_path_factory.mktemp("e2e")
    from scripts.build_images import chart_app_version

    tag = chart_app_version()
    with K3SContainer(image=K3S_IMAGE) as k3s:
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(k3s.config_yaml())
        for name in ("trainer", "predictor", "mlflow"):  # into containerd, as kind load does
            archive = root / f"{name}.tar"
            with archive.open("wb") as handle:
                for chunk in client.images.get(f"petr4-{name}:{tag}").save(named=True):
                    handle.write(chunk)
            k3s.copy_into_container(str(archive), f"/tmp/{name}.tar")
            code, output = k3s.exec(["ctr", "images", "import", f"/tmp/{name}.tar"])
            assert code == 0, output
        yield Cluster(kubeconfig)


def served_model(cluster: Cluster, folder: Path):
    """The version and URI the predictor reports, through a fresh port-forward, over TLS with
    a token taken from the Secrets as NOTES.txt tells a user to."""
    from services.client.client import ForecastClient, Tls

    secret = cluster.kubectl(
        "get", "secret", "petr4-predictor-tls", "-o", "jsonpath={.data.ca\\.crt}"
    )
    (folder / "petr4-ca.crt").write_bytes(base64.b64decode(secret))
    tokens = cluster.kubectl(
        "get", "secret", "petr4-predictor-tokens", "-o", "jsonpath={.data.tokens}"
    )
    token = base64.b64decode(tokens).decode().splitlines()[0]
    port = free_port()
    forward = cluster.forward(port)
    try:
        tls = Tls(folder / "petr4-ca.crt")
        with ForecastClient(f"localhost:{port}", tls=tls, token=token) as client:
            wait_until(client.is_serving, 120, "the port-forward")
            (info,) = client.model_info(TICKER).models
            return info.model.version, info.uri
    finally:
        forward.terminate()
        forward.wait()


def test_the_readme_on_a_real_cluster(cluster, tmp_path):
    install = readme_command("helm install petr4 charts/petr4")
    cluster.run(install + CLUSTER_FLAGS)  # waits for the training and the predictor
    assert served_model(cluster, tmp_path) == ("1", f"models:/lstm-{TICKER}@champion")

    cluster.run(readme_command("trainer.job.revision=2"))  # trains version 2
    start_caller(cluster.kubectl)  # inside the cluster, over TLS with a token, as a client would
    time.sleep(10)
    cluster.run(readme_command("predictor.model.version=2"))  # rolls the pods, waits
    time.sleep(5)
    counts = stop_caller(cluster.kubectl)
    assert counts["failed"] == [] and counts["ok"] > 100
    assert counts["versions"][-1] == "2"
    assert served_model(cluster, tmp_path) == ("2", f"models:/lstm-{TICKER}/2")

    cluster.run(readme_command("helm -n forecast rollback"))
    assert served_model(cluster, tmp_path)[1] == f"models:/lstm-{TICKER}@champion"
    cluster.run(readme_command("helm -n forecast test"))

    # The retraining receiver against the real API: the webhook Alertmanager would send.
    token = base64.b64decode(
        cluster.kubectl("get", "secret", "petr4-retrainer-token", "-o", "jsonpath={.data.token}")
    ).decode()
    port = free_port()
    forward = cluster.forward(port, "petr4-retrainer", 8080)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 120, "the port-forward")
        alert = {
            "status": "firing",
            "labels": {"alertname": "Petr4RealizedMAEHigh", "ticker": TICKER},
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/alerts",
            data=json.dumps({"version": "4", "alerts": [alert]}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["outcomes"][0]["outcome"] == "started"
    finally:
        forward.terminate()
        forward.wait()
    started = cluster.kubectl("get", "jobs", "-l", "petr4.io/trigger=alert", "-o", "name")
    assert len(started.split()) == 1
