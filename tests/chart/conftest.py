from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.harness.chart import Helm
from tests.helpers import SCHEMAS, tool_or_skip


class CrdLoader(yaml.SafeLoader):
    """YAML 1.1 reads a bare ``=`` as its "value" tag; in a CRD's enum it is just a string."""


CrdLoader.add_constructor("tag:yaml.org,2002:value", CrdLoader.construct_yaml_str)


@pytest.fixture(scope="session")
def helm() -> Helm:
    """helm from PATH, else as ``make setup`` unpacked it from its PyPI wheel."""
    return Helm(tool_or_skip("helm"))


class Renderer:
    """``helm template`` of the chart, values given as files or as keyword overrides."""

    def __init__(self, helm: Helm):
        self.helm = helm

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return self.helm.run(*args)

    def __call__(self, *values: Path, namespace: str = "forecast", **overrides) -> list[dict]:
        flags = []
        for path in values:
            flags += ["-f", str(path)]
        for key, value in overrides.items():
            flags += [
                "--set-string" if isinstance(value, str) else "--set",
                f"{key.replace('__', '.')}={value}",
            ]
        return self.helm.template(*flags, namespace=namespace)


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
