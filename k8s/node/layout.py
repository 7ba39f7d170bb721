"""What every part of a node's start shares: where the node keeps what it makes, its
addresses, its configs rendered from config/, and starting a process inside its namespaces."""

from __future__ import annotations

import json
import string
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Inside the node's network namespace only: nothing outside it has these addresses or a route
# to them.
NODE_IP, POD_CIDR, SERVICE_CIDR = "10.100.0.2", "10.244.0.0/24", "10.96.0.0/16"
API_IP, DNS_IP = "10.96.0.1", "10.96.0.10"
NODE_NAME = "petr4"  # the Kubernetes node's name, whatever the instance's


class NodeError(RuntimeError):
    """Why the node cannot start or stop, in one line."""


@dataclass(frozen=True)
class Node:
    """One instance on this host, by its name: its folders, namespace and record."""

    name: str

    @property
    def state(self) -> Path:
        return Path("/var/lib/petr4-node") / self.name

    @property
    def run(self) -> Path:
        return Path("/run/petr4-node") / self.name

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def netns(self) -> Path:
        return Path("/run/netns") / self.name

    @property
    def audit_log(self) -> Path:
        return self.state / "logs" / "audit.log"

    @property
    def info(self) -> Path:
        return self.state / "node.json"

    def read_info(self) -> dict:
        return json.loads(self.info.read_text()) if self.info.exists() else {}


def render(template: str, **values: str) -> str:
    return string.Template((HERE / "config" / template).read_text()).substitute(values)


def wait(what: str, check, seconds: float, log: Path | None = None) -> None:
    """Until ``check()``; past ``seconds``, an error with the last lines of ``log``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = ""
    if log is not None and log.exists():
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[-600:]
    raise NodeError(f"{what} not ready within {seconds:.0f} s{': ' + tail if tail else ''}")


class Starter:
    """Starts the node's processes inside its namespaces, each logging to state/logs, and asks
    its API server with the node's own kubectl."""

    def __init__(self, node: Node, bin_dir: Path, holder: int):
        self.node, self.bin = node, bin_dir
        self.enter = ["nsenter", f"--mount=/proc/{holder}/ns/mnt", f"--net={node.netns}", "--"]

    def log(self, name: str) -> Path:
        return self.node.state / "logs" / f"{name}.log"

    def start(self, name: str, argv: list[str], inside: bool = True) -> int:
        with self.log(name).open("ab") as log:
            process = subprocess.Popen(
                [*(self.enter if inside else []), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"},
            )
        (self.node.run / f"{name}.pid").write_text(str(process.pid))
        return process.pid

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(self.node.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args[:2])}: {done.stderr.strip()}")
        return done.stdout

    def answers(self, *args: str) -> str | None:
        """kubectl's answer, or None while the API server cannot give it."""
        try:
            return self.kubectl(*args)
        except (NodeError, subprocess.TimeoutExpired):
            return None
