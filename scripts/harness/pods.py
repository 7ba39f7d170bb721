"""The chart's pod specs run as Docker containers, the way a kubelet would run them.

From each container of a pod spec: the image, command and args (``$(VAR)`` expanded as
Kubernetes does), the environment (values, Secret keys the caller provides, ConfigMap keys
of the rendering, and the pod's annotations through the downward API), the user,
group and fsGroup, a read-only root, dropped capabilities, no privilege escalation, every
emptyDir as a host folder the pod's containers share, every Secret and ConfigMap volume as
read-only files with the modes it asks for, every persistent volume claim as a host folder, and the
memory limit. Init containers run to completion first; readiness is the spec's own probe;
termination is its preStop pause, SIGTERM, and SIGKILL at the end of its grace period.

Containers share the host's network (no Docker bridge is needed) and the Services' names
resolve to loopback, so ports are the ones the chart was rendered with.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core import tokens
from services.secrets import main as secrets_job

_VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


class PodFailed(RuntimeError):
    """A container exited non-zero, or never became ready; the message carries its log."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, ``$$`` is a ``$``."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VARIABLE.sub(replace, text)


def quantity_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity)).groups()
    return int(float(number) * _UNITS[unit])


def service_hosts(docs: list[dict]) -> list[str]:
    """Every name a Service of the rendering answers to inside its namespace and cluster."""
    names = []
    for doc in docs:
        if doc["kind"] == "Service":
            name, namespace = doc["metadata"]["name"], doc["metadata"]["namespace"]
            names += [name, f"{name}.{namespace}", f"{name}.{namespace}.svc"]
            names.append(f"{name}.{namespace}.svc.cluster.local")
    return names


@dataclass
class PodHost:
    """Where pods run: one Docker daemon, the host's network, a folder for volumes.

    Every container it starts carries a label of this host, so ``remove_all`` stops
    what a failed or interrupted test left behind.
    """

    client: docker.DockerClient
    root: Path
    hosts: list[str] = field(default_factory=list)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    label: str = field(default_factory=lambda: f"petr4-pods-{uuid.uuid4().hex[:8]}")

    def pod(self, name: str, spec: dict, annotations: dict[str, str] | None = None) -> Pod:
        return Pod(self, name, spec, annotations or {})

    def use(self, docs: list[dict]) -> None:
        """Serve a rendering's Services' names, ConfigMaps and Secrets to the pods started
        here, as the API server would: its own Secrets, and those the chart's hook Job
        (petr4-secrets) would make, made by the same code (Secrets the caller set beforehand
        stay, as the Job keeps those that exist)."""
        self.hosts = service_hosts(docs)
        self.config_maps = {
            d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
        }
        for doc in docs:
            if doc["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in doc.get("data", {}).items()}
                self.secrets.setdefault(doc["metadata"]["name"], data)
            elif doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-secrets"):
                for entry in json.loads(doc["data"]["spec.json"]):
                    if entry["name"] not in self.secrets:
                        self.secrets[entry["name"]] = secrets_job.make(entry)[1]

    def predictor_credentials(self, folder: Path) -> tuple[Path, Path]:
        """The predictor's CA and first token as files in ``folder``, as NOTES.txt tells a
        user to take them from the chart's Secrets."""
        ca, token = folder / "petr4-ca.crt", folder / "petr4-token"
        ca.write_text(self.secrets["petr4-predictor-tls"]["ca.crt"])
        token.write_text(tokens.parse(self.secrets["petr4-predictor-tokens"]["tokens"])[0] + "\n")
        return ca, token

    def volume_folder(self, pod: str, volume: dict, fs_group: int | None) -> Path:
        """A Secret's or ConfigMap's keys as files, as the kubelet projects them: each with
        its item's mode or the volume's defaultMode (0644 when neither is given), owned by
        root and, with an fsGroup, by the pod's group."""
        source = volume.get("secret") or volume.get("configMap")
        name = source.get("secretName") or source.get("name")
        data = (self.secrets if "secret" in volume else self.config_maps)[name]
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        folder = self.root / "volumes" / f"{pod}-{volume['name']}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        for item in items:
            path = folder / item["path"]
            path.write_text(data[item["key"]])
            if os.geteuid() == 0:
                os.chown(path, 0, fs_group if fs_group is not None else 0)
            path.chmod(item.get("mode", source.get("defaultMode", 0o644)))
        folder.chmod(0o755)
        return folder

    def claim_folder(self, claim: str, uid: int | None, gid: int | None) -> Path:
        """A persistent volume claim: a host folder that outlives its pods, owned as fsGroup."""
        folder = self.root / "claims" / claim
        if not folder.is_dir():
            folder.mkdir(parents=True)
            if os.geteuid() == 0 and uid is not None:
                os.chown(folder, uid, gid if gid is not None else uid)
            else:
                folder.chmod(0o777)
        return folder

    def remove_all(self) -> None:
        for container in self.client.containers.list(all=True, filters={"label": self.label}):
            container.remove(force=True)


class Pod:
    """One pod spec's containers on a ``PodHost``."""

    def __init__(self, host: PodHost, name: str, spec: dict, annotations: dict[str, str]):
        self.host, self.name, self.spec, self.annotations = host, name, spec, annotations
        self.containers: list = []
        self.started_at: float | None = None
        self.empty_dirs: dict[str, Path] = {}  # one per volume, shared by the containers

    # -- translation -------------------------------------------------------------------

    def _env(self, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = expand(str(entry["value"]), env)
                continue
            source = entry["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[entry["name"]] = self.host.secrets[ref["name"]][ref["key"]]
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[entry["name"]] = self.host.config_maps[ref["name"]][ref["key"]]
            else:  # the downward API: the pod's own annotations
                path = source["fieldRef"]["fieldPath"]
                key = re.fullmatch(r"metadata\.annotations\['(.+)'\]", path).group(1)
                env[entry["name"]] = self.annotations[key]
        return env

    def _empty_dir(self, name: str) -> Path:
        """An emptyDir: made with the pod, seen by each of its containers, init ones too."""
        if name not in self.empty_dirs:
            folder = self.host.root / "volumes" / f"{self.name}-{name}-{uuid.uuid4().hex[:6]}"
            folder.mkdir(parents=True)
            folder.chmod(0o1777)
            self.empty_dirs[name] = folder
        return self.empty_dirs[name]

    def _mounts(self, container: dict) -> dict[str, dict]:
        """Bind mounts: emptyDirs, Secrets and ConfigMaps, persistent volume claims."""
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        context = self.spec.get("securityContext", {})
        binds = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                folder = self._empty_dir(mount["name"])
                mode = "ro" if mount.get("readOnly") else "rw"
                binds[str(folder)] = {"bind": mount["mountPath"], "mode": mode}
            elif "secret" in volume or "configMap" in volume:
                folder = self.host.volume_folder(self.name, volume, context.get("fsGroup"))
                binds[str(folder)] = {"bind": mount["mountPath"], "mode": "ro"}
            elif "persistentVolumeClaim" in volume:
                folder = self.host.claim_folder(
                    volume["persistentVolumeClaim"]["claimName"],
                    context.get("runAsUser"),
                    context.get("fsGroup"),
                )
                binds[str(folder)] = {"bind": mount["mountPath"], "mode": "rw"}
            else:
                raise NotImplementedError(f"volume {mount['name']}: {sorted(volume)}")
        return binds

    def run_options(self, container: dict) -> dict:
        """``docker run`` keyword arguments for one container of this pod."""
        env = self._env(container)
        pod_context = self.spec.get("securityContext", {})
        context = {**pod_context, **container.get("securityContext", {})}
        binds = self._mounts(container)
        options = {
            "image": container["image"],
            "name": f"{self.name}-{container['name']}-{uuid.uuid4().hex[:6]}",
            "environment": env,
            "network_mode": "host",
            "extra_hosts": dict.fromkeys(self.host.hosts, "127.0.0.1"),
            "read_only": bool(context.get("readOnlyRootFilesystem")),
            "cap_drop": context.get("capabilities", {}).get("drop", []),
            "cap_add": context.get("capabilities", {}).get("add", []),
            "volumes": binds,
            "labels": {self.host.label: "", "petr4.pod": self.name},
            "detach": True,
        }
        if context.get("allowPrivilegeEscalation") is False:
            options["security_opt"] = ["no-new-privileges"]
        if "runAsUser" in context:
            options["user"] = f"{context['runAsUser']}:{context.get('runAsGroup', 0)}"
        if "fsGroup" in pod_context:
            options["group_add"] = [str(pod_context["fsGroup"])]
        limit = container.get("resources", {}).get("limits", {}).get("memory")
        if limit:
            options["mem_limit"] = quantity_bytes(limit)
        # Kubernetes' command replaces the image's entrypoint, its args the image's CMD.
        if "command" in container:
            options["entrypoint"] = [expand(str(a), env) for a in container["command"]]
        if "args" in container:
            options["command"] = [expand(str(a), env) for a in container["args"]]
        return options

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, init_timeout: float = 600) -> Pod:
        """Init containers to completion, one by one, then the containers, detached."""
        for container in self.spec.get("initContainers", []):
            started = self.host.client.containers.run(**self.run_options(container))
            code = started.wait(timeout=init_timeout)["StatusCode"]
            if code != 0:
                raise PodFailed(self._failure(started, f"init container exited {code}"))
        self.started_at = time.monotonic()
        self.containers = [
            self.host.client.containers.run(**self.run_options(c)) for c in self.spec["containers"]
        ]
        return self

    def wait(self, timeout: float = 1800) -> None:
        """Wait for every container to exit 0, as a Job's pod must."""
        for container in self.containers:
            code = container.wait(timeout=timeout)["StatusCode"]
            if code != 0:
                raise PodFailed(self._failure(container, f"exited {code}"))

    def ready(self) -> bool:
        """Every container's readiness probe passes now (no probe: it is running)."""
        for spec, container in zip(self.spec["containers"], self.containers, strict=True):
            container.reload()
            if container.status != "running":
                return False
            probe = spec.get("readinessProbe")
            if probe is not None and not _probe(probe, spec):
                return False
        return True

    def wait_ready(self, timeout: float) -> float:
        """Seconds from the containers' start to readiness; PodFailed if one exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return time.monotonic() - self.started_at
            for container in self.containers:
                if container.status == "exited":
                    raise PodFailed(self._failure(container, "exited before it was ready"))
            time.sleep(0.05)
        raise PodFailed(self._failure(self.containers[0], f"not ready after {timeout:.0f} s"))

    def terminate(self) -> list[tuple[int, float]]:
        """What a kubelet does on deletion: preStop, SIGTERM, SIGKILL after the grace period.

        Returns each container's exit code and the seconds it took after SIGTERM.
        """
        grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
        outcomes = []
        for spec, container in zip(self.spec["containers"], self.containers, strict=True):
            pre_stop = spec.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
            pause = float(pre_stop.get("seconds", 0))
            time.sleep(pause)
            container.kill(signal="SIGTERM")
            sent = time.monotonic()
            try:
                code = container.wait(timeout=max(grace - pause, 1))["StatusCode"]
            except Exception:  # the grace period is over
                container.kill(signal="SIGKILL")
                code = container.wait()["StatusCode"]
            outcomes.append((code, time.monotonic() - sent))
        return outcomes

    def logs(self) -> str:
        return "\n".join(c.logs().decode(errors="replace") for c in self.containers)

    def remove(self) -> None:
        for container in self.containers:
            container.remove(force=True)
        self.containers = []

    def _failure(self, container, what: str) -> str:
        log = container.logs().decode(errors="replace")
        return f"pod {self.name}, container {container.name}: {what}\n{log[-4000:]}"


def _port(port: int | str, container: dict) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return number


def _probe(probe: dict, container: dict) -> bool:
    """One attempt of a gRPC or HTTP probe against loopback, as the kubelet makes it."""
    timeout = float(probe.get("timeoutSeconds", 1))
    if "grpc" in probe:
        target = f"127.0.0.1:{_port(probe['grpc']['port'], container)}"
        try:
            with grpc.insecure_channel(target) as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")),
                    timeout=timeout,
                )
            return answer.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False
    if "httpGet" in probe:
        http = probe["httpGet"]
        url = f"http://127.0.0.1:{_port(http['port'], container)}{http.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return 200 <= response.status < 400
        except OSError:
            return False
    raise NotImplementedError(f"probe {sorted(probe)}")
