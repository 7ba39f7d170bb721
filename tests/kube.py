"""What the integration and cluster tiers share to talk to a node of k8s/node/: its status,
kubectl (the node's own build) and helm with its kubeconfig, skaffold as `make deploy` and
`make dev` run it, its API server's audit log, and a pod's processes frozen in place."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scripts.harness.chart import CHART
from scripts.harness.processes import free_port, http_ok, wait_until
from tests.helpers import REPO

NODE = [sys.executable, str(REPO / "k8s" / "node" / "node.py")]
NAMESPACE = "forecast"


def skaffold(command: str, values: dict, folder: Path, source: str, repo: Path = REPO) -> dict:
    """Popen's arguments for `make deploy` (``run``) or `make dev` (``dev``) in ``repo``, with
    ``values`` over the chart's (skaffold.yaml's PETR4_VALUES) and prices from ``source``."""
    values_file = folder / "values.yaml"
    values_file.write_text(json.dumps(values))  # JSON is YAML
    return {
        "args": [sys.executable, str(repo / "scripts" / "skaffold.py"), command],
        "cwd": repo,
        "env": os.environ | {"PETR4_VALUES": str(values_file), "PETR4_SOURCE": source},
    }


def node_status(name: str = "petr4") -> dict:
    done = subprocess.run(
        [*NODE, "--name", name, "status", "--json"], capture_output=True, text=True
    )
    return json.loads(done.stdout) if done.stdout.strip() else {}


@dataclass
class Kube:
    """kubectl and helm against one node, run from the repository's root as users run them."""

    kubeconfig: str
    kubectl_bin: str
    helm_bin: str = ""
    audit_log: str = ""

    @classmethod
    def of(cls, status: dict, helm: str = "") -> Kube:
        kubectl = str(Path(status["bin"]) / "kubectl")
        return cls(status["kubeconfig"], kubectl, helm, status.get("audit_log", ""))

    def run(self, command: list[str], timeout: float = 1800, stdin: str | None = None, check=True):
        binary = {"helm": self.helm_bin, "kubectl": self.kubectl_bin}[command[0]]
        # The README names the chart by its path from the repository's root.
        args = [str(CHART) if word == "charts/petr4" else word for word in command[1:]]
        done = subprocess.run(
            [binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=os.environ | {"KUBECONFIG": self.kubeconfig},
        )
        if check:
            assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}{done.stderr}"
        return done

    def kubectl(self, *args: str, stdin: str | None = None, namespace: str = NAMESPACE) -> str:
        return self.run(["kubectl", "-n", namespace, *args], stdin=stdin).stdout

    def helm(self, *args: str, timeout: float = 1800) -> str:
        return self.run(["helm", *args], timeout=timeout).stdout

    def get(self, *what: str, namespace: str = NAMESPACE) -> dict:
        return json.loads(self.kubectl("get", *what, "-o", "json", namespace=namespace))

    def apply(self, objects: list[dict], namespace: str = NAMESPACE) -> None:
        listing = {"apiVersion": "v1", "kind": "List", "items": objects}
        self.kubectl("apply", "-f", "-", stdin=json.dumps(listing), namespace=namespace)

    def deploy(self, values: dict, folder: Path, source: str = "synthetic") -> None:
        """The release as `make deploy` installs it: skaffold run, its images built and
        copied into the node, helm install or upgrade with skaffold.yaml's settings."""
        done = subprocess.run(
            **skaffold("run", values, folder, source), capture_output=True, text=True, timeout=3600
        )
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]

    def empty_namespace(self, namespace: str = NAMESPACE) -> None:
        """The namespace created anew: what an earlier test left there (a release, its
        volumes' claims) cannot pass for this one's."""
        self.run(["kubectl", "delete", "namespace", namespace, "--ignore-not-found", "--wait"])
        self.run(["kubectl", "create", "namespace", namespace])

    def secret(self, name: str, key: str, namespace: str = NAMESPACE) -> bytes:
        field = key.replace(".", "\\.")
        encoded = self.kubectl(
            "get", "secret", name, "-o", f"jsonpath={{.data.{field}}}", namespace=namespace
        )
        return base64.b64decode(encoded)

    def forward(
        self, target: str, port: int, remote: int, namespace: str = NAMESPACE
    ) -> subprocess.Popen:
        """``kubectl port-forward`` from the host's loopback, through the API server."""
        return subprocess.Popen(
            [self.kubectl_bin, "-n", namespace, "port-forward", target, f"{port}:{remote}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ | {"KUBECONFIG": self.kubeconfig},
        )

    def post_alert(self, alertname: str, ticker: str) -> str:
        """One firing alert, as Alertmanager posts it, to the retraining receiver's Service
        through a port-forward, with the chart's token: what came of it (started, active...)."""
        token = self.secret("petr4-retrainer-token", "token").decode()
        port = free_port()
        forward = self.forward("service/petr4-retrainer", port, 8080)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_ok(f"{url}/healthz"), 60, "the receiver's port-forward")
            labels = {"alertname": alertname, "ticker": ticker, "namespace": NAMESPACE}
            request = urllib.request.Request(
                f"{url}/alerts",
                data=json.dumps(
                    {"version": "4", "alerts": [{"status": "firing", "labels": labels}]}
                ).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["outcomes"][0]["outcome"]
        finally:
            forward.terminate()
            forward.wait()

    def token_kubeconfig(self, path: Path, service_account: str, namespace: str) -> Path:
        """A kubeconfig that is ``service_account`` (a token the API server issues for it):
        whoever uses it has that account's rights, and no more."""
        token = self.kubectl("create", "token", service_account, namespace=namespace).strip()
        admin = json.loads(self.run(["kubectl", "config", "view", "--raw", "-o", "json"]).stdout)
        (cluster,) = admin["clusters"]
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [cluster],
                    "users": [{"name": service_account, "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "sa",
                            "context": {
                                "cluster": cluster["name"],
                                "user": service_account,
                                "namespace": namespace,
                            },
                        }
                    ],
                    "current-context": "sa",
                }
            )
        )
        return path

    def requests_by(self, user: str) -> list[tuple[str, str, int]]:
        """(verb, resource, response code) of each request ``user`` made, from the API
        server's audit log."""
        found = []
        for line in Path(self.audit_log).read_text().splitlines():
            event = json.loads(line)
            if event["user"]["username"] == user and event["stage"] == "ResponseComplete":
                ref = event.get("objectRef", {})
                found.append(
                    (event["verb"], ref.get("resource", ""), event["responseStatus"]["code"])
                )
        return found


FREEZER = Path("/sys/fs/cgroup/freezer")
SIGTERM_BIT = 1 << (15 - 1)  # in /proc/PID/status's signal masks, signal n is bit n - 1
FREEZING_CHECKS = 100  # of 10 ms: far longer than any system call takes to end


class FrozenPod:
    """A pod's processes held still through the cgroup v1 freezer its kubelet put them in
    (under the node's cgroupRoot), so that a test acts at a moment it has checked, not timed."""

    def __init__(self, uid: str, node: str = "petr4"):
        (self.folder,) = (FREEZER / node / "kubepods").rglob(f"pod{uid}")

    def freeze(self) -> None:
        """Frozen, whatever its processes were doing. A task in a system call stops on its way
        out, but one that cannot (a vfork parent waiting for its child, frozen before it could
        exec) leaves the cgroup FREEZING for good: then it is thawed to run on, and frozen again."""
        while True:
            self._write("FROZEN")
            for _ in range(FREEZING_CHECKS):
                if self._state() == "FROZEN":
                    return
                time.sleep(0.01)
            self.thaw()

    def thaw(self) -> None:
        self._write("THAWED")
        while self._state() != "THAWED":
            time.sleep(0.01)

    def _write(self, state: str) -> None:
        (self.folder / "freezer.state").write_text(state)

    def _state(self) -> str:
        return (self.folder / "freezer.state").read_text().strip()

    def pid(self, command: str) -> int:
        """The pod's process whose command line holds ``command``."""
        for procs in self.folder.rglob("cgroup.procs"):
            for pid in map(int, procs.read_text().split()):
                if command.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        raise LookupError(f"no process of the pod runs {command}")


def sigterm_pending(pid: int) -> bool:
    """Whether a SIGTERM waits for ``pid`` (frozen, it cannot take it yet)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("ShdPnd:", "SigPnd:")) and int(line.split()[1], 16) & SIGTERM_BIT:
            return True
    return False
