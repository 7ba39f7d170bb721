"""The MLflow image with the chart's external backend option: a real PostgreSQL, from a Secret."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from scripts.harness.chart import named, pod_spec
from scripts.harness.processes import free_port, wait_until

pytestmark = pytest.mark.containers


@pytest.fixture
def postgres():
    """A PostgreSQL server of its own on a free loopback port, run as the postgres user."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.skip("no PostgreSQL server: apt-get install -y postgresql")
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL refuses root and this test needs root to run it as postgres")
    binaries = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="petr4-pg-"))
    shutil.chown(root, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(binaries / "initdb"), "-D", str(root / "data"), "-A", "trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = ["-p", str(port), "-k", str(root), "-c", "listen_addresses=127.0.0.1"]
    server = subprocess.Popen(
        [*as_postgres, str(binaries / "postgres"), "-D", str(root / "data"), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
        wait_until(
            lambda: subprocess.run(ready, capture_output=True).returncode == 0, 30, "PostgreSQL"
        )
        subprocess.run(
            [
                *as_postgres,
                str(binaries / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "mlflow",
            ],
            check=True,
        )
        yield (
            f"postgresql://postgres@127.0.0.1:{port}/mlflow",
            [
                *as_postgres,
                str(binaries / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-d",
                "mlflow",
                "-tAc",
            ],
        )
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def test_mlflow_keeps_its_runs_in_an_external_postgresql(images, helm, pod_host, postgres):
    uri, psql = postgres
    port = free_port()
    docs = helm.template("--set", f"mlflow.backend.existingSecret=mlflow-db,mlflow.port={port}")
    pod_host.use(docs)
    pod_host.secrets = {"mlflow-db": {"backend-store-uri": uri}}  # as the Secret would hold it
    spec = pod_spec(named(docs, "Deployment", "-mlflow"))
    mlflow = pod_host.pod("mlflow-pg", spec).start()
    mlflow.wait_ready(180)

    client = MlflowClient(f"http://127.0.0.1:{port}")
    experiment = client.create_experiment("stored-in-postgresql")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "mae_brl", 0.45)
    client.set_terminated(run.info.run_id)

    stored = subprocess.run(
        [*psql, "select name from experiments where name = 'stored-in-postgresql'"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert stored.stdout.strip() == "stored-in-postgresql"
    assert client.get_run(run.info.run_id).data.metrics == {"mae_brl": 0.45}
