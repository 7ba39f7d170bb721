"""petr4-secrets, the chart's hook Job, against a real API server as the account the chart
gives it (its ServiceAccount, Role and RoleBinding as rendered): it makes each Secret the
chart's spec names, keeps one that exists, adopts one an earlier release rendered so that
helm leaves it in place, and can reach no other Secret."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509

from scripts.harness.chart import Helm, named
from scripts.harness.processes import run_cli
from tests.helpers import tool_or_skip

pytestmark = pytest.mark.integration

HOOK = "petr4-secrets"


class Hook:
    """The chart's spec and the hook's account in one namespace, and the Job's command."""

    def __init__(self, kube, namespace: str, tmp_path):
        self.kube, self.namespace = kube, namespace
        rendering = Helm(tool_or_skip("helm")).template(namespace=namespace)
        kube.apply(
            [
                d
                for d in rendering
                if d["metadata"]["name"] == HOOK
                and d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
            ],
            namespace=namespace,
        )
        self.spec_file = tmp_path / "spec.json"
        self.spec_file.write_text(named(rendering, "ConfigMap", HOOK)["data"]["spec.json"])
        self.names = [entry["name"] for entry in json.loads(self.spec_file.read_text())]
        self.kubeconfig = kube.token_kubeconfig(tmp_path / "hook.kubeconfig", HOOK, namespace)

    def run(self):
        return run_cli(
            ["petr4-secrets", "--spec", str(self.spec_file), "--namespace", self.namespace],
            {"PETR4_SECRETS_KUBECONFIG": str(self.kubeconfig)},
        )

    def secret(self, name: str) -> dict:
        return self.kube.get("secret", name, namespace=self.namespace)

    def data(self, name: str) -> dict[str, str]:
        encoded = self.secret(name)["data"]
        return {key: base64.b64decode(value).decode() for key, value in encoded.items()}


@pytest.fixture
def hook(control_plane, kube_namespace, tmp_path) -> Hook:
    return Hook(control_plane, kube_namespace, tmp_path)


def test_it_makes_each_secret_once_and_keeps_it_after(hook):
    made = hook.run()
    assert made.returncode == 0, made.stderr
    first = {name: hook.data(name) for name in hook.names}
    for name in hook.names:
        metadata = hook.secret(name)["metadata"]
        assert metadata["annotations"]["helm.sh/resource-policy"] == "keep"
        assert metadata["labels"]["app.kubernetes.io/instance"] == "petr4"
    admin = first["petr4-mlflow-admin"]
    assert admin["credentials"] == (
        "[mlflow]\nmlflow_tracking_username = admin\n"
        f"mlflow_tracking_password = {admin['password']}\n"
    )
    assert len(admin["secret-key"]) == 48 and len(first["petr4-retrainer-token"]["token"]) == 40
    tls = first["petr4-predictor-tls"]
    assert hook.secret("petr4-predictor-tls")["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(tls["ca.crt"].encode())
    x509.load_pem_x509_certificate(tls["tls.crt"].encode()).verify_directly_issued_by(ca)
    again = hook.run()  # the next upgrade's
    assert again.returncode == 0, again.stderr
    assert {name: hook.data(name) for name in hook.names} == first


def test_a_secret_an_earlier_release_rendered_is_kept_as_it_is_and_adopted(hook):
    """An upgrade from a chart that rendered its Secrets: helm deletes what a release no
    longer renders unless the live object says keep, so the Job says it, and changes nothing
    else (MLflow's user store holds that password)."""
    rendered = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "petr4-mlflow-user-serve"},
        "stringData": {"username": "petr4-serve", "password": "from-the-old-chart"},
    }
    hook.kube.apply([rendered], namespace=hook.namespace)
    done = hook.run()
    assert done.returncode == 0, done.stderr
    secret = hook.secret("petr4-mlflow-user-serve")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert hook.data("petr4-mlflow-user-serve") == {
        "username": "petr4-serve",
        "password": "from-the-old-chart",
    }


def test_its_account_reaches_no_other_secret(hook):
    """The Role names the chart's Secrets: any other one is refused by the API server, and
    the Job stops with one line saying so."""
    as_hook = ["kubectl", "--kubeconfig", str(hook.kubeconfig)]
    hook.kube.apply(
        [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "someone-elses"}}],
        namespace=hook.namespace,
    )
    for refused in (["get", "secret", "someone-elses"], ["get", "secrets"]):
        done = hook.kube.run([*as_hook, *refused], check=False)
        assert done.returncode != 0 and "Forbidden" in done.stderr, refused
    spec = json.loads(hook.spec_file.read_text())
    hook.spec_file.write_text(json.dumps([{**spec[0], "name": "someone-elses"}]))
    done = hook.run()
    assert done.returncode == 1
    assert "the API server refused: HTTP 403" in done.stderr, done.stderr
