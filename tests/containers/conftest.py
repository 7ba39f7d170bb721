"""The containers tier: the project's images, built here, running the chart's pod specs.

It needs a Docker daemon (DOCKER_HOST names it). Where none answers it skips, saying why;
in CI, where ``.ci/run`` starts one, that skip counts as a failure (tests/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.harness.chart import Helm
from scripts.harness.pods import PodHost
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
