"""The chart's own Secrets are made in the cluster by a hook Job, never rendered: a render
holds no password, token or key and is the same every time, as GitOps tools render it; the
Job's Role reaches those Secrets alone; a user's own Secret (existingSecret) is not made."""

from __future__ import annotations

import json

import pytest

from scripts.harness.chart import CHART, CI_VALUES, by_kind, named, pod_spec

pytestmark = pytest.mark.chart

SECURED = ["petr4-mlflow-admin", "petr4-mlflow-user-ingest", "petr4-mlflow-user-train"]
SECURED += ["petr4-mlflow-user-serve", "petr4-predictor-tokens", "petr4-predictor-tls"]
SECURED += ["petr4-retrainer-token"]


def spec_of(docs: list[dict]) -> list[dict]:
    return json.loads(named(docs, "ConfigMap", "-secrets")["data"]["spec.json"])


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_two_offline_renders_are_the_same_and_hold_no_secret(helm, values):
    first, second = (helm.run("template", "petr4", str(CHART), "-f", str(values)) for _ in "12")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # nothing random: a GitOps sync changes nothing
    docs = helm.template("-f", str(values))
    assert by_kind(docs, "Secret") == []
    assert "PRIVATE KEY" not in first.stdout and "mlflow_tracking_password" not in first.stdout


def test_the_hook_job_makes_each_secret_the_pods_mount(render):
    docs = render()
    assert [e["name"] for e in spec_of(docs)] == SECURED
    mounted = {
        volume["secret"]["secretName"]
        for doc in docs
        if doc["kind"] in ("Deployment", "Job", "CronJob", "Pod")
        for volume in pod_spec(doc).get("volumes", [])
        if "secret" in volume
    }
    assert mounted == set(SECURED)
    job = named(docs, "Job", "-secrets")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    (container,) = pod_spec(job)["containers"]
    assert container["command"] == ["petr4-secrets", "--spec", "/etc/petr4/secrets/spec.json"]
    assert container["image"].startswith("petr4-predictor:")  # the image with no torch


def test_the_hook_job_may_read_and_annotate_only_those_secrets(render):
    docs = render()
    (create, named_only) = named(docs, "Role", "-secrets")["rules"]
    # A create cannot be limited by name in RBAC; reading and patching are.
    assert create == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}
    assert named_only == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": SECURED,
        "verbs": ["get", "patch"],
    }
    binding = named(docs, "RoleBinding", "-secrets")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "petr4-secrets", "namespace": "forecast"}
    ]
    assert pod_spec(named(docs, "Job", "-secrets"))["serviceAccountName"] == "petr4-secrets"


def test_a_users_own_secret_is_not_made(render):
    docs = render(
        mlflow__auth__existingSecret="my-admin",
        predictor__auth__existingSecret="my-tokens",
        predictor__tls__existingSecret="my-tls",
        retrainer__token__existingSecret="my-token",
    )
    assert [e["name"] for e in spec_of(docs)] == SECURED[1:4]  # the components' accounts
    none = render(mlflow__auth__enabled=False, predictor__auth__existingSecret="my-tokens",
                  predictor__tls__enabled=False, retrainer__enabled=False)  # fmt: skip
    assert [d for d in none if d["metadata"]["name"] == "petr4-secrets"] == []
