"""Test certificates made with openssl: a CA, and certificates it signs for a server (names
of loopback) and for a client. Each call makes new keys, so a rotation can be staged."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = "DNS:localhost,IP:127.0.0.1"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A CA in ``folder``, and what it signs."""

    folder: Path
    name: str = "petr4-test-ca"

    @property
    def cert(self) -> Path:
        return self.folder / f"{self.name}.crt"

    @property
    def key(self) -> Path:
        return self.folder / f"{self.name}.key"

    @classmethod
    def create(cls, folder: Path, name: str = "petr4-test-ca") -> Authority:
        folder.mkdir(parents=True, exist_ok=True)
        ca = cls(folder, name)
        _openssl(
            *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(ca.key), "-out", str(ca.cert), "-days", "2"),
            *("-subj", f"/CN={name}"),
        )
        return ca

    def sign(self, name: str, subject_names: str = SERVER_NAMES, client: bool = False) -> Pair:
        """A key and a certificate for ``name``, signed by this CA."""
        pair = Pair(self.folder / f"{name}.crt", self.folder / f"{name}.key")
        request = self.folder / f"{name}.csr"
        _openssl(
            *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(pair.key), "-out", str(request), "-subj", f"/CN={name}"),
        )
        usage = "clientAuth" if client else "serverAuth"
        extensions = self.folder / f"{name}.ext"
        extensions.write_text(f"subjectAltName={subject_names}\nextendedKeyUsage={usage}\n")
        _openssl(
            *("x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key)),
            *("-CAcreateserial", "-out", str(pair.cert), "-days", "2"),
            *("-extfile", str(extensions)),
        )
        return pair
