"""Which room may import which: the shared core imports no service, no service imports the
trainer, the benchmarks or the developer scripts, and nothing imports the tests but tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.unit

SERVICES = (
    "services.ingestion",
    "services.predictor",
    "services.client",
    "services.retrainer",
    "services.accounts",
)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def imports_of(folder: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(REPO)): imported_modules(path)
        for path in (REPO / folder).rglob("*.py")
    }


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path} imports {module}"
        for path, modules in imports_of(folder).items()
        for module in sorted(modules)
        if module.startswith(forbidden)
    ]


def test_the_core_imports_no_service():
    services = SERVICES
    assert offenders("services/core", (*services, "trainer", "bench", "scripts", "tests")) == []


def test_no_service_imports_the_trainer_the_benchmarks_or_the_scripts():
    assert offenders("services", ("trainer", "bench", "scripts", "tests")) == []


def test_the_trainer_imports_no_service_but_the_core():
    services = SERVICES
    assert offenders("trainer", (*services, "bench", "scripts", "tests")) == []


def test_only_tests_import_the_tests():
    for folder in ("services", "trainer", "bench", "scripts"):
        assert offenders(folder, ("tests",)) == [], folder
