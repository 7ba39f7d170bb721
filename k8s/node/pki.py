"""The node's certificates and kubeconfigs, made locally with openssl: one CA signs the API
server's and the kubelet's serving certificates and a client certificate for each component
and for the administrator; a key pair signs the service accounts' tokens."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Client:
    """A client certificate's file stem and subject (its user and groups to the API)."""

    stem: str
    user: str
    group: str = ""

    @property
    def subject(self) -> str:
        return (f"/O={self.group}" if self.group else "") + f"/CN={self.user}"


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {done.stderr.strip().splitlines()[-1]}")


class Authority:
    """The node's CA in ``folder``, and what it signs."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.cert, self.key = folder / "ca.crt", folder / "ca.key"

    def create(self, name: str) -> Authority:
        self.folder.mkdir(parents=True, exist_ok=True)
        _openssl(
            "req", "-x509", *_EC, "-keyout", str(self.key), "-out", str(self.cert),
            "-days", "3650", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return self

    def sign(self, stem: str, subject: str, usage: str, names: list[str] = ()) -> Path:
        """A key and a certificate, ``stem``.key and ``stem``.crt; ``usage`` is serverAuth or
        clientAuth; ``names`` the server's DNS names and IP addresses."""
        extensions = [
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
            "-addext", f"extendedKeyUsage={usage}",
        ]  # fmt: skip
        if names:
            alt = ",".join(f"IP:{n}" if n[0].isdigit() else f"DNS:{n}" for n in names)
            extensions += ["-addext", f"subjectAltName={alt}"]
        cert = self.folder / f"{stem}.crt"
        _openssl(
            "req", "-x509", *_EC, "-CA", str(self.cert), "-CAkey", str(self.key),
            "-keyout", str(self.folder / f"{stem}.key"), "-out", str(cert),
            "-days", "365", "-subj", subject, *extensions,
        )  # fmt: skip
        return cert

    def service_account_keys(self) -> tuple[Path, Path]:
        private, public = self.folder / "sa.key", self.folder / "sa.pub"
        _openssl(
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            str(private),
        )
        _openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))
        return private, public

    def kubeconfig(self, path: Path, server: str, client: Client) -> Path:
        """A kubeconfig for ``client`` at ``server``, its certificates inline."""

        def inline(file: Path) -> str:
            return base64.b64encode(file.read_bytes()).decode()

        crt, key = self.folder / f"{client.stem}.crt", self.folder / f"{client.stem}.key"
        path.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: petr4
  cluster:
    server: {server}
    certificate-authority-data: {inline(self.cert)}
users:
- name: {client.user}
  user:
    client-certificate-data: {inline(crt)}
    client-key-data: {inline(key)}
contexts:
- name: petr4
  context: {{cluster: petr4, user: {client.user}}}
current-context: petr4
"""
        )
        path.chmod(0o600)
        return path
