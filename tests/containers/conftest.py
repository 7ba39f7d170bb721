"""The containers tier: the project's images, built here, running the chart's pod specs.

It needs a Docker daemon (DOCKER_HOST names it). Where none answers it skips, saying why;
in CI, where ``.ci/run`` starts one, that skip counts as a failure (tests/conftest.py).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from scripts.harness.chart import Helm
from scripts.harness.pods import PodHost
from scripts.harness.processes import free_port, wait_until
from tests.helpers import REPO, tool_or_skip

pytestmark = pytest.mark.containers


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker daemon answers ({exc}); scripts/dockerd.sh starts one")
    yield client
    client.close()


@pytest.fixture(scope="session")
def images(docker_client, tmp_path_factory) -> dict[str, str]:
    """The three images, built as scripts/build_images.py builds them, tagged as the chart expects."""
    from scripts.build_images import chart_app_version

    log = tmp_path_factory.mktemp("images") / "build.log"
    with log.open("w") as handle:
        built = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "build_images.py")],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            timeout=1800,
        )
    if built.returncode != 0:
        pytest.fail(f"the images did not build:\n{log.read_text()[-4000:]}")
    tag = chart_app_version()
    return {name: f"petr4-{name}:{tag}" for name in ("trainer", "predictor", "mlflow")}


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(tool_or_skip("helm"))


@pytest.fixture
def pod_host(docker_client, tmp_path):
    """Where a test's pods run; every container it started is removed after the test."""
    host = PodHost(docker_client, tmp_path)
    yield host
    host.remove_all()


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


@pytest.fixture
def object_store():
    """An S3-compatible server (moto's; production uses a real object store) on a free
    loopback port, with one empty bucket; its endpoint and the keys a Secret would hold."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    keys = {"AWS_ACCESS_KEY_ID": "petr4-test", "AWS_SECRET_ACCESS_KEY": "petr4-test-secret"}
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket="petr4-mlflow")
        yield keys | {"MLFLOW_S3_ENDPOINT_URL": endpoint}, s3
    finally:
        server.stop()
