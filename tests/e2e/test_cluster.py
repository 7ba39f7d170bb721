"""The whole system on a real cluster: K3s in Docker, the two images, the chart.

Skipped, saying why, where no Docker daemon answers. Where one does, it needs the
network for base images, PyPI and MLflow's image (the prices are synthetic).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

K3S_IMAGE = "rancher/k3s:v1.31.4-k3s1"
NAMESPACE = "forecast"
TAG = "e2e"


def docker_or_skip():
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        return client
    except Exception as exc:
        pytest.skip(
            f"no Docker daemon answers ({type(exc).__name__}: {exc}); e2e needs one for images and K3s"
        )


def tool(name: str) -> str:
    found = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "kube_tools.py"), name],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()


class Cluster:
    def __init__(self, kubeconfig: Path):
        self.kubeconfig = str(kubeconfig)
        self.helm_bin, self.kubectl_bin = tool("helm"), tool("kubectl")

    def _run(self, binary: str, args: tuple[str, ...], timeout: float) -> str:
        done = subprocess.run(
            [binary, "--kubeconfig", self.kubeconfig, "-n", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def helm(self, *args: str, timeout: float = 1800) -> str:
        return self._run(self.helm_bin, args, timeout)

    def kubectl(self, *args: str, timeout: float = 900) -> str:
        return self._run(self.kubectl_bin, args, timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    client = docker_or_skip()
    from testcontainers.community.k3s import K3SContainer

    root = tmp_path_factory.mktemp("e2e")
    for image in ("trainer", "predictor"):
        client.images.build(
            path=str(REPO), dockerfile=f"Dockerfile.{image}", tag=f"petr4-{image}:{TAG}", rm=True
        )
    with K3SContainer(image=K3S_IMAGE) as k3s:
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(k3s.config_yaml())
        for image in ("trainer", "predictor"):  # into containerd, as kind load does
            archive = root / f"{image}.tar"
            with archive.open("wb") as handle:
                for chunk in client.images.get(f"petr4-{image}:{TAG}").save(named=True):
                    handle.write(chunk)
            k3s.copy_into_container(str(archive), f"/tmp/{image}.tar")
            code, output = k3s.exec(["ctr", "images", "import", f"/tmp/{image}.tar"])
            assert code == 0, output
        yield Cluster(kubeconfig)


INSTALL = [
    "--set",
    f"images.trainer.repository=petr4-trainer,images.trainer.tag={TAG},images.trainer.pullPolicy=Never",
    "--set",
    f"images.predictor.repository=petr4-predictor,images.predictor.tag={TAG},images.predictor.pullPolicy=Never",
    "--set",
    "ingestion.source=synthetic",
    "--set",
    "monitoring.serviceMonitor.enabled=false,monitoring.prometheusRule.enabled=false",
    "--set-json",
    'trainer.extraArgs=["--max-epochs","3","--champion-tolerance","1"]',
]

# Runs inside the cluster, beside the Service: counts answers while the pods are replaced.
CALLER = """
import json, sys, time
import grpc
from services.client.client import ForecastClient
ok, failed, versions = 0, [], set()
deadline = time.monotonic() + float(sys.argv[1])
with ForecastClient(sys.argv[2], timeout=5) as client:
    while time.monotonic() < deadline:
        try:
            versions.add(client.forecast("PETR4.SA").model.version)
            ok += 1
        except grpc.RpcError as error:
            failed.append(error.code().name)
        time.sleep(0.05)
print(json.dumps({"ok": ok, "failed": failed, "versions": sorted(versions)}))
"""


def test_install_forecast_and_roll_out_a_new_version(cluster, tmp_path):
    cluster.helm(
        "install",
        "petr4",
        str(REPO / "charts" / "petr4"),
        "--create-namespace",
        *INSTALL,
        "--timeout",
        "30m",
    )  # returns once the training hook has registered version 1
    cluster.kubectl("rollout", "status", "deployment/petr4-predictor", "--timeout=15m")

    port = free_port()
    forward = subprocess.Popen(
        [
            cluster.kubectl_bin,
            "--kubeconfig",
            cluster.kubeconfig,
            "-n",
            NAMESPACE,
            "port-forward",
            "service/petr4-predictor",
            f"{port}:50051",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from services.client.client import ForecastClient

        with ForecastClient(f"127.0.0.1:{port}") as client:
            wait_until(client.is_serving, 120, "the port-forward")
            response = client.forecast("PETR4.SA")
        assert response.predicted_close > 0 and response.synthetic_data
        assert response.model.version == "1"
    finally:
        forward.terminate()

    cluster.helm(
        "upgrade", "petr4", str(REPO / "charts" / "petr4"), "--reuse-values", "--timeout", "30m"
    )
    # The post-upgrade hook trained version 2; now pin it while a caller counts failures.
    cluster.kubectl(
        "run",
        "caller",
        f"--image=petr4-predictor:{TAG}",
        "--image-pull-policy=Never",
        "--restart=Never",
        "--command",
        "--",
        "python",
        "-c",
        CALLER,
        "120",
        "petr4-predictor:50051",
    )
    time.sleep(10)
    cluster.helm(
        "upgrade",
        "petr4",
        str(REPO / "charts" / "petr4"),
        "--reuse-values",
        "--set",
        "predictor.model.version=2",
        "--set",
        "trainer.job.enabled=false",
    )
    cluster.kubectl("rollout", "status", "deployment/petr4-predictor", "--timeout=10m")
    cluster.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/caller", "--timeout=5m"
    )
    counts = json.loads(cluster.kubectl("logs", "caller").strip().splitlines()[-1])
    assert counts["failed"] == [] and counts["ok"] > 100
    assert counts["versions"][-1] == "2"

    cluster.helm("rollback", "petr4")
    cluster.kubectl("rollout", "status", "deployment/petr4-predictor", "--timeout=10m")
    cluster.helm("test", "petr4", "--timeout", "5m")
