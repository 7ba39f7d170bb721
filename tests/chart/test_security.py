"""The chart installs secured: TLS and tokens on the predictor, accounts on MLflow, each
credential a Secret mounted whole, and one value turning each off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cryptography import x509

from scripts.harness.chart import CHART, CI_VALUES, by_kind, component_of, named, pod_spec
from services.secrets import main as secrets_job
from tests.chart.test_chart import env_of

pytestmark = pytest.mark.chart


def secrets_spec(docs: list[dict]) -> list[dict]:
    """What the chart's hook Job (petr4-secrets) is asked to make."""
    found = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "petr4-secrets"]
    return json.loads(found[0]["data"]["spec.json"]) if found else []


def made(docs: list[dict], suffix: str) -> tuple[str, dict[str, str]]:
    """The type and data of the Secret that Job makes under a name ending with ``suffix``."""
    (entry,) = [e for e in secrets_spec(docs) if e["name"].endswith(suffix)]
    return secrets_job.make(entry)


def mounts(container: dict) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def volumes(spec: dict) -> dict[str, dict]:
    return {v["name"]: v for v in spec["volumes"]}


def test_the_predictor_serves_tls_and_tokens_from_whole_secrets(render):
    docs = render(namespace="forecast")
    spec = pod_spec(named(docs, "Deployment", "-predictor"))
    (server,) = spec["containers"]
    env = env_of(server, docs)
    assert env["PETR4_SERVE_TLS_CERT_FILE"] == "/etc/petr4/tls/tls.crt"
    assert env["PETR4_SERVE_TLS_KEY_FILE"] == "/etc/petr4/tls/tls.key"
    assert env["PETR4_SERVE_TOKEN_FILE"] == "/etc/petr4/auth/tokens"
    assert all("subPath" not in m for m in server["volumeMounts"])  # a subPath never rotates
    assert volumes(spec)["tls"]["secret"] == {
        "secretName": "petr4-predictor-tls",
        "defaultMode": 0o440,
    }
    assert volumes(spec)["tokens"]["secret"] == {
        "secretName": "petr4-predictor-tokens",
        "defaultMode": 0o440,
    }
    assert made(docs, "-predictor-tokens")[1]["tokens"]


def test_without_cert_manager_the_chart_makes_a_certificate_for_every_name_it_is_called(render):
    kind, files = made(render(namespace="forecast"), "-predictor-tls")
    assert kind == "kubernetes.io/tls"
    cert = x509.load_pem_x509_certificate(files["tls.crt"].encode())
    ca = x509.load_pem_x509_certificate(files["ca.crt"].encode())
    cert.verify_directly_issued_by(ca)  # the CA clients are given signed it
    assert cert.subject.rfc4514_string() == "CN=petr4-predictor"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(names.get_values_for_type(x509.DNSName))
    assert {
        "localhost",
        "petr4-predictor",
        "petr4-predictor.forecast.svc",
        "petr4-predictor-headless.forecast.svc.cluster.local",
    } <= dns
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_with_cert_manager_a_certificate_is_asked_for_instead(render):
    docs = render.helm.template("--api-versions", "cert-manager.io/v1")
    (certificate,) = by_kind(docs, "Certificate")
    assert certificate["spec"]["secretName"] == "petr4-predictor-tls"
    assert certificate["spec"]["privateKey"]["rotationPolicy"] == "Always"
    (issuer,) = by_kind(docs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert "petr4-predictor-tls" not in [e["name"] for e in secrets_spec(docs)]
    named_issuer = render.helm.template(
        "--api-versions",
        "cert-manager.io/v1",
        "--set",
        "predictor.tls.certManager.issuerRef.name=letsencrypt,predictor.tls.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert by_kind(named_issuer, "Issuer") == []
    (certificate,) = by_kind(named_issuer, "Certificate")
    assert certificate["spec"]["issuerRef"]["kind"] == "ClusterIssuer"


def test_mutual_tls_mounts_the_clients_ca(render):
    docs = render(predictor__tls__clientCASecret="client-ca")
    spec = pod_spec(named(docs, "Deployment", "-predictor"))
    env = env_of(spec["containers"][0], docs)
    assert env["PETR4_SERVE_TLS_CLIENT_CA_FILE"] == "/etc/petr4/client-ca/ca.crt"
    assert volumes(spec)["client-ca"]["secret"] == {"secretName": "client-ca", "defaultMode": 0o440}


def test_one_value_turns_each_off(render):
    docs = render(
        predictor__tls__enabled=False, predictor__auth__enabled=False, mlflow__auth__enabled=False
    )
    spec = pod_spec(named(docs, "Deployment", "-predictor"))
    env = env_of(spec["containers"][0], docs)
    assert not {"PETR4_SERVE_TLS_CERT_FILE", "PETR4_SERVE_TOKEN_FILE"} & set(env)
    assert env["PETR4_SERVE_HEALTH_PORT"] == "50052"  # the probes' port stays
    assert [e["name"] for e in secrets_spec(docs)] == ["petr4-retrainer-token"]
    (server,) = pod_spec(named(docs, "Deployment", "-mlflow"))["containers"]
    assert "--app-name=basic-auth" not in server["args"]
    assert not [j for j in by_kind(docs, "Job") if "accounts" in j["metadata"]["name"]]


def test_mlflow_runs_its_accounts_and_each_component_mounts_its_own(render):
    docs = render()
    (server,) = pod_spec(named(docs, "Deployment", "-mlflow"))["containers"]
    assert "--app-name=basic-auth" in server["args"]
    credentials = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        spec = pod_spec(doc)
        for container in spec.get("initContainers", []) + spec["containers"]:
            volume = mounts(container).get("/tmp/.mlflow")
            if volume:
                source = volumes(spec)[volume]["secret"]["secretName"]
                credentials[f"{component_of(doc)}/{container['name']}"] = source
    assert credentials == {
        "ingest/ingest": "petr4-mlflow-user-ingest",
        "train/ingest-if-missing": "petr4-mlflow-user-ingest",
        "train/train": "petr4-mlflow-user-train",
        "predictor/predictor": "petr4-mlflow-user-serve",
        "accounts/accounts": "petr4-mlflow-admin",
    }  # the retraining receiver has none
    for role in ("ingest", "train", "serve"):
        data = made(docs, f"-mlflow-user-{role}")[1]
        password = data["password"]
        assert data["credentials"] == (
            f"[mlflow]\nmlflow_tracking_username = petr4-{role}\nmlflow_tracking_password = {password}\n"
        )


def test_the_auth_config_step_writes_what_mlflow_reads(tmp_path):
    """The init step's file, read back by MLflow's own configuration reader."""
    (tmp_path / "password").write_text("adm%in-pass\n")
    ini = tmp_path / "basic_auth.ini"
    env = {
        **os.environ,
        "MLFLOW_AUTH_DATABASE_URI": "postgresql://petr4:p%40ss@db:5432/mlflow",
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(tmp_path / "password"),
    }
    subprocess.run(
        [sys.executable, str(CHART / "files" / "mlflow-auth-config.py"), str(ini)],
        env=env,
        check=True,
    )
    probe = "from mlflow.server.auth.config import read_auth_config as r; c = r(); print(c.default_permission, c.database_uri, c.admin_username, c.admin_password)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_AUTH_")}
    read = subprocess.run(
        [sys.executable, "-c", probe],
        env=env | {"MLFLOW_AUTH_CONFIG_PATH": str(ini)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.split() == [
        "NO_PERMISSIONS",
        "postgresql://petr4:p%40ss@db:5432/mlflow",
        "admin",
        "adm%in-pass",
    ]


def secret_volumes(docs: list[dict]):
    """(workload, volume, mode of each file) for every Secret volume of every pod the chart runs."""
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "CronJob", "Pod"):
            continue
        for volume in pod_spec(doc).get("volumes", []):
            if "secret" in volume:
                source = volume["secret"]
                default = source.get("defaultMode", 0o644)  # Kubernetes' own default
                modes = [item.get("mode", default) for item in source.get("items", [])] or [default]
                yield doc["metadata"]["name"], volume["name"], modes


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_no_secret_volume_is_readable_by_others(render, values):
    """Each file of a Secret volume is its owner's and the pod's group's (fsGroup) alone."""
    found = list(secret_volumes(render(values, namespace="forecast")))
    assert found or "no-security" in values.name
    for workload, volume, modes in found:
        assert all(mode & 0o007 == 0 for mode in modes), (workload, volume, [oct(m) for m in modes])
