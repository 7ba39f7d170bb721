"""The chart's alerting rules, checked and unit-tested by promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.harness.chart import by_kind
from tests.helpers import promtool_or_skip

pytestmark = pytest.mark.chart

HERE = Path(__file__).parent


@pytest.fixture
def rules_dir(render, tmp_path) -> Path:
    promtool_or_skip()
    (rule,) = by_kind(render(namespace="forecast"), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    return tmp_path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd)


def test_promtool_check_rules(rules_dir):
    result = promtool("check", "rules", "rules.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_promtool_alert_tests(rules_dir):
    result = promtool("test", "rules", "alerts_test.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_fails_when_an_alert_is_wrong(rules_dir):
    """The harness itself can fail: a rule that never fires breaks the tests."""
    rules = yaml.safe_load((rules_dir / "rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "Petr4StalePrices":
                rule["expr"] = rule["expr"].replace("> 3", "> 30")
    (rules_dir / "rules.yaml").write_text(yaml.safe_dump(rules))
    result = promtool("test", "rules", "alerts_test.yaml", cwd=rules_dir)
    assert result.returncode != 0
    assert "Petr4StalePrices" in result.stdout + result.stderr
