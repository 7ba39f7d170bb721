"""The cluster tier: the chart on the node ``make cluster`` starts (k8s/node/), its images
built here and loaded into the node's containerd as `make deploy` does, driven with helm and
kubectl as a user drives them. Where no node runs it skips, saying so; in CI, where .ci/run starts one, that
skip is a failure (tests/conftest.py)."""

from __future__ import annotations

import pytest

from scripts import kube_tools
from tests.kube import Kube, node_status

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="session")
def kube() -> Kube:
    status = node_status()
    if not status.get("up") or not status.get("worker"):
        pytest.skip("no node runs here: `make cluster` (as root) starts one")
    helm = kube_tools.find("helm")
    if helm is None:
        pytest.skip("helm is neither on PATH nor in .cache/tools: `make setup` fetches it")
    return Kube.of(status, str(helm))
