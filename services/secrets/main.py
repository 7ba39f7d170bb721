"""petr4-secrets: the chart's own Secrets, made once inside the cluster, never in a manifest.

The chart runs it as a hook Job before each install and upgrade, with a Role that may create
Secrets and read and annotate only the ones it names. It reads what to make from the spec the
chart renders (a JSON list, one entry a Secret) and creates each Secret that does not exist;
one that exists is kept as it is (its passwords are in MLflow's user store, its tokens in the
clients, its CA in their trust stores), and marked ``helm.sh/resource-policy: keep``, so that
a release that once rendered it leaves it in place. Rotating one is deleting it and upgrading.

  petr4-secrets --spec /etc/petr4/secrets/spec.json --namespace forecast

Kinds of entry (each with ``name`` and ``labels``):
  mlflow-account  username, password, credentials (MLflow's ini file); ``secretKey``: the
                  server's secret-key too (the admin's)
  token           one random token under ``key`` (40 letters and digits)
  tls             a CA (``caName``) and a certificate it signs for ``commonName``, ``dnsNames``
                  and ``ipAddresses``, valid ``days``: tls.crt, tls.key, ca.crt (the CA's key
                  is not kept)
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import secrets
import string
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.logging import configure_logging
from services.core.settings import parse_settings

log = logging.getLogger("services.secrets")

# What helm reads on an object before deleting it, on the live object: kept, whatever a
# release's manifest says.
POLICY, KEEP = "helm.sh/resource-policy", "keep"
_ALPHABET = string.ascii_letters + string.digits


class SecretsSettings(BaseSettings):
    """petr4-secrets' settings."""

    model_config = SettingsConfigDict(env_prefix="PETR4_SECRETS_")

    spec: Path = Field(
        Path("/etc/petr4/secrets/spec.json"), description="the chart's list of Secrets to make"
    )
    namespace: str = Field("default", description="namespace of the Secrets")
    kubeconfig: Path | None = Field(
        None, description="kubeconfig to reach the API with (default: the pod's own account)"
    )
    log_level: str = Field("INFO", description="logging level")
    json_logs: bool = Field(False, description="log one JSON object per line")


def random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def mlflow_credentials(username: str, password: str) -> str:
    """MLflow's credentials file (MLFLOW_TRACKING_CREDENTIALS_FILE's format)."""
    return (
        f"[mlflow]\nmlflow_tracking_username = {username}\nmlflow_tracking_password = {password}\n"
    )


def certificate(
    common_name: str, dns_names: list[str], ip_addresses: list[str], days: int, ca_name: str
) -> dict[str, str]:
    """A new CA and a server certificate it signs (ECDSA P-256), as PEM text."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days + 1))  # outlives what it signs
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "tls.crt": server.public_bytes(pem).decode(),
        "tls.key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "ca.crt": ca.public_bytes(pem).decode(),
    }


def make(entry: dict) -> tuple[str, dict[str, str]]:
    """A new Secret's type and data (text) for one entry of the spec."""
    kind = entry["kind"]
    if kind == "mlflow-account":
        password = random_text(32)
        data = {
            "username": entry["username"],
            "password": password,
            "credentials": mlflow_credentials(entry["username"], password),
        }
        if entry.get("secretKey"):
            data["secret-key"] = random_text(48)
        return "Opaque", data
    if kind == "token":
        # No newline: Alertmanager sends the retrainer's token as the Secret holds it.
        return "Opaque", {entry["key"]: random_text(40)}
    if kind == "tls":
        names = entry["dnsNames"], entry.get("ipAddresses", [])
        files = certificate(entry["commonName"], *names, entry["days"], entry["caName"])
        return "kubernetes.io/tls", files
    raise ValueError(f"{entry.get('name')}: unknown kind of Secret {kind!r}")


def ensure(core_api, namespace: str, spec: list[dict]) -> dict[str, str]:
    """Each Secret of ``spec`` exists: made where missing, kept where present. Returns what
    came of each (``created`` or ``kept``)."""
    from kubernetes.client.exceptions import ApiException

    outcome = {}
    for entry in spec:
        name = entry["name"]
        try:
            existing = core_api.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            existing = None
        if existing is None:
            kind, data = make(entry)
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "labels": entry.get("labels", {}),
                    "annotations": {POLICY: KEEP},
                },
                "type": kind,
                "stringData": data,
            }
            core_api.create_namespaced_secret(namespace, body)
            outcome[name] = "created"
        else:
            if (existing.metadata.annotations or {}).get(POLICY) != KEEP:
                patch = {"metadata": {"annotations": {POLICY: KEEP}}}
                core_api.patch_namespaced_secret(name, namespace, patch)
            outcome[name] = "kept"
        log.info("Secret %s: %s", name, outcome[name])
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(SecretsSettings, argv, "petr4-secrets", __doc__)
    configure_logging(settings.log_level, settings.json_logs)
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        spec = json.loads(settings.spec.read_text())
    except (OSError, ValueError) as error:
        log.error("cannot read the spec %s: %s", settings.spec, error)
        return 2
    if settings.kubeconfig is None:
        config.load_incluster_config()
    else:
        config.load_kube_config(str(settings.kubeconfig))
    try:
        ensure(client.CoreV1Api(), settings.namespace, spec)
    except ApiException as error:
        log.error("the API server refused: HTTP %s %s", error.status, error.reason)
        return 1
    except (KeyError, TypeError, ValueError) as error:  # a spec this release did not render
        log.error("the spec %s is not one this program reads: %r", settings.spec, error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
