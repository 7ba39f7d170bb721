"""Images, skaffold and the rendered chart, checked offline: hadolint, schemas, checkov."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import jsonpatch
import jsonschema
import pytest
import yaml

from scripts.harness.chart import by_kind, documented_commands
from scripts.harness.processes import BIN
from tests.helpers import REPO, SCHEMAS

pytestmark = pytest.mark.chart


DOCKERFILES = ["Dockerfile.predictor", "Dockerfile.trainer", "Dockerfile.mlflow"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint(dockerfile):
    result = subprocess.run(
        [str(BIN / "hadolint"), str(REPO / dockerfile)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def skaffold_schema():
    path = SCHEMAS / "skaffold-v4beta13.json"
    if not path.is_file():
        pytest.skip(f"skaffold's schema not found at {path} (it lives beside the project)")
    return json.loads(path.read_text())


def skaffold_config(profile: str | None = None) -> dict:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    if profile:  # as skaffold applies one: its sections replace the config's, then its patches
        (chosen,) = [p for p in config.pop("profiles") if p["name"] == profile]
        config |= {key: chosen[key] for key in ("build", "deploy") if key in chosen}
        config = jsonpatch.apply_patch(config, chosen.get("patches", []))
    return config


def test_skaffold_yaml_matches_its_schema(skaffold_schema):
    jsonschema.Draft7Validator(skaffold_schema).validate(skaffold_config())


def test_skaffold_monitoring_profile_matches_its_schema(skaffold_schema):
    config = skaffold_config("monitoring")
    jsonschema.Draft7Validator(skaffold_schema).validate(config)
    stack, release = config["deploy"]["helm"]["releases"]
    assert [stack["name"], release["name"]] == ["kube-prometheus-stack", "petr4"]  # CRDs first
    assert stack["upgradeOnChange"] is True  # edits to its values file reach the cluster


def test_skaffold_fixes_its_run_id_and_the_chart_renders_the_same_label(render):
    """A run id that changes at each skaffold run rolls every Deployment each time; one that
    the chart does not render itself rolls them again at the next plain helm upgrade."""
    (release,) = skaffold_config()["deploy"]["helm"]["releases"]
    run_id = release["setValues"]["podLabels.skaffold\\.dev/run-id"]
    docs = render(**{"podLabels.skaffold\\.dev/run-id": run_id})
    for doc in by_kind(docs, "Deployment"):
        assert doc["spec"]["template"]["metadata"]["labels"]["skaffold.dev/run-id"] == run_id
    pages = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    commands = [c for p in pages for c in documented_commands(p.read_text(), "skaffold")]
    assert commands and all(f"skaffold.dev/run-id={run_id}" in c for c in commands), commands


def test_skaffold_wires_every_image_into_the_chart():
    config = skaffold_config()
    images = {a["image"]: a["docker"]["dockerfile"] for a in config["build"]["artifacts"]}
    assert images == {
        f"petr4-{name}": f"Dockerfile.{name}" for name in ("trainer", "predictor", "mlflow")
    }
    (release,) = config["deploy"]["helm"]["releases"]
    assert release["chartPath"] == "charts/petr4"
    templates = release["setValueTemplates"]
    for image, value in (
        ("trainer", "images.trainer"),
        ("predictor", "images.predictor"),
        ("mlflow", "mlflow.image"),
    ):
        assert templates[f"{value}.repository"] == f"{{{{.IMAGE_REPO_petr4_{image}}}}}"
        assert templates[f"{value}.tag"] == f"{{{{.IMAGE_TAG_petr4_{image}}}}}"
    assert config["build"]["local"]["push"] is False


def test_skaffold_node_profile_builds_the_same_images_and_copies_each_into_the_node(
    skaffold_schema,
):
    """On the local node (its kube context turns the profile on, and skaffold's global config
    for it calls it a local cluster) each image is built by build_images.py from the same
    Dockerfile at the same kind of tag, and copied into the node once skaffold has tagged it."""
    default, node = skaffold_config(), skaffold_config("node")
    jsonschema.Draft7Validator(skaffold_schema).validate(node)
    (profile,) = [p for p in yaml.safe_load((REPO / "skaffold.yaml").read_text())["profiles"]
                  if p["name"] == "node"]  # fmt: skip
    global_config = yaml.safe_load((REPO / "k8s" / "node" / "skaffold" / "config.yaml").read_text())
    (context,) = global_config["kubeContexts"]
    assert profile["activation"] == [{"kubeContext": context["kube-context"]}]
    assert context["local-cluster"] is True and global_config["global"]["collect-metrics"] is False
    dockerfiles = {a["image"]: a["docker"]["dockerfile"] for a in default["build"]["artifacts"]}
    built = {}
    for artifact in node["build"]["artifacts"]:
        built[artifact["image"]] = artifact["custom"]["dependencies"]["dockerfile"]["path"]
        command = artifact["custom"]["buildCommand"].split()
        assert command[:2] == ["python", "scripts/build_images.py"]
        assert command[-1] == artifact["image"].removeprefix("petr4-")
        (hook,) = artifact["hooks"]["after"]
        assert 'k8s/node/node.py load --if-missing "$SKAFFOLD_IMAGE"' in hook["command"][-1]
    assert built == dockerfiles
    assert node["build"]["tagPolicy"] == default["build"]["tagPolicy"]
    assert node["build"]["local"]["push"] is False


def test_skaffold_waits_for_a_first_training():
    """The install's training Job and the predictor it feeds take minutes on a 2-CPU node:
    helm waits for both, as long as a first training may take."""
    config = skaffold_config()
    (release,) = config["deploy"]["helm"]["releases"]
    assert release["wait"] is True
    for verb in ("install", "upgrade"):
        flags = config["deploy"]["helm"]["flags"][verb]
        assert "--wait-for-jobs" in flags and "--timeout=30m" in flags
    assert config["deploy"]["statusCheckDeadlineSeconds"] >= 30 * 60


def test_port_forwards_name_services_the_chart_renders(render):
    config = skaffold_config()
    (release,) = config["deploy"]["helm"]["releases"]
    services = {
        d["metadata"]["name"]: d for d in by_kind(render(namespace=release["namespace"]), "Service")
    }
    for forward in config["portForward"]:
        service = services[forward["resourceName"]]
        assert forward["port"] in [p["port"] for p in service["spec"]["ports"]]


def test_kube_prometheus_stack_selects_what_the_chart_labels(render):
    values = yaml.safe_load((REPO / "k8s" / "kube-prometheus-stack-values.yaml").read_text())
    spec = values["prometheus"]["prometheusSpec"]
    alertmanager = values["alertmanager"]["alertmanagerSpec"]
    docs = render()
    selected = [(spec["serviceMonitorSelector"], m) for m in by_kind(docs, "ServiceMonitor")]
    selected += [(spec["ruleSelector"], r) for r in by_kind(docs, "PrometheusRule")]
    selected += [
        (alertmanager["alertmanagerConfigSelector"], c) for c in by_kind(docs, "AlertmanagerConfig")
    ]
    assert sorted(resource["kind"] for _, resource in selected) == [
        "AlertmanagerConfig",
        "PrometheusRule",
        "ServiceMonitor",
        "ServiceMonitor",
    ]
    for selector, resource in selected:
        assert selector["matchLabels"].items() <= resource["metadata"]["labels"].items()
    assert alertmanager["alertmanagerConfigNamespaceSelector"] == {}  # any namespace
    sidecar = values["grafana"]["sidecar"]["dashboards"]
    (dashboard,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]


@pytest.fixture(scope="module")
def checkov():
    found = subprocess.run(
        ["bash", str(REPO / "scripts" / "checkov_venv.sh"), "--find"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        pytest.skip(
            "checkov is not installed in .cache/tools: `make setup` installs it (needs PyPI)"
        )
    return found.stdout.strip()


def test_checkov_finds_no_failed_check(render, checkov, tmp_path):
    """Every check passes, or is skipped in the chart with a written reason."""
    docs = render()
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump_all(docs))
    result = subprocess.run(
        [
            checkov,
            "--compact",
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--file",
            str(tmp_path / "rendered.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert summary["passed"] > 100
    for skipped in report["results"]["skipped_checks"]:
        assert skipped["check_result"].get("suppress_comment"), skipped["check_id"]


def test_the_chart_states_why_each_skipped_check_is_skipped():
    for template in (REPO / "charts" / "petr4" / "templates").glob("*.yaml"):
        for line in template.read_text().splitlines():
            if "checkov.io/skip" in line:
                assert "=" in line and len(line.split("=", 1)[1].strip()) > 10, (
                    f"{template.name}: {line}"
                )


def test_python_of_the_images_meets_the_projects_requirement():
    """The images' Python is one the project declares it runs on."""
    from packaging.specifiers import SpecifierSet

    required = SpecifierSet(
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    )
    for dockerfile in DOCKERFILES:
        (version,) = re.findall(r"python:(\d+\.\d+)-slim", (REPO / dockerfile).read_text())
        assert f"{version}.0" in required, (dockerfile, version, str(required))


def copy_sources(dockerfile: str) -> list[str]:
    """What a Dockerfile's COPY instructions take from the build context."""
    sources = []
    for line in (REPO / dockerfile).read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += words[1:-1]
    return sources


def test_the_trainer_image_takes_no_serving_code_and_no_readme():
    """skaffold rebuilds an image when its COPY sources change: a predictor-only edit must
    not change the trainer's, or its Job would be renamed and train again."""
    sources = copy_sources("Dockerfile.trainer")
    assert "services/core" in sources and "trainer" in sources
    for serving in (
        "services",
        "services/predictor",
        "services/client",
        "services/retrainer",
        "README.md",
    ):
        assert serving not in sources, serving
    assert not [s for s in copy_sources("Dockerfile.predictor") if s.startswith("trainer")]
