"""One node of upstream Kubernetes on this machine, inside a network namespace of its own.

    python3 k8s/node/node.py up [--control-plane-only]   build (once) and start it
    python3 k8s/node/node.py load IMAGE...               images from Docker into its containerd
    python3 k8s/node/node.py status [--json]             what runs, and where its kubeconfig is
    python3 k8s/node/node.py down                        stop it and leave the host as it was
    python3 k8s/node/node.py build                       only build the programs

etcd, the API server, the controller manager and the scheduler, and (unless
--control-plane-only) containerd with runc, the kubelet, kube-proxy and the cluster DNS, all
built from go.mod's modules (programs.py). Pod and Service addresses exist only inside the
network namespace, which has no route out; the API server reaches the host through a relay on
its loopback (relay.py), which the kubeconfig names. The node's processes share a mount
namespace of their own, so that what they mount never reaches the host's. Runs as root;
stdlib only. ``--name`` runs another node beside the first (the integration tests' control
plane).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import host
import pki
import programs

HERE = Path(__file__).resolve().parent
NODE_IP, POD_CIDR, SERVICE_CIDR = "10.100.0.2", "10.244.0.0/24", "10.96.0.0/16"
API_IP, DNS_IP = "10.96.0.1", "10.96.0.10"
NODE_NAME = "petr4"
# Started in this order, stopped in the reverse one.
CONTROL_PLANE = ("etcd", "kube-apiserver", "relay", "kube-controller-manager", "kube-scheduler")
WORKER = ("containerd", "kubelet", "kube-proxy")
CLIENTS = (
    pki.Client("admin", "petr4-admin", "system:masters"),
    pki.Client("kube-controller-manager", "system:kube-controller-manager"),
    pki.Client("kube-scheduler", "system:kube-scheduler"),
    pki.Client("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
    pki.Client("kube-proxy", "system:kube-proxy"),
    pki.Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
)


class NodeError(RuntimeError):
    """Why the node cannot start or stop, in one line."""


@dataclass(frozen=True)
class Node:
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
    """Starts the node's processes inside its namespaces, each logging to state/logs."""

    def __init__(self, node: Node, bin_dir: Path, holder: int):
        self.node, self.bin, self.holder = node, bin_dir, holder
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

    def run(self, *argv: str) -> str:
        done = subprocess.run([*self.enter, *argv], capture_output=True, text=True)
        if done.returncode != 0:
            raise NodeError(f"{argv[0]} {' '.join(argv[1:3])}: {done.stderr.strip()}")
        return done.stdout


def kubectl(node: Node, bin_dir: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(node.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise NodeError(f"kubectl {' '.join(args[:2])}: {done.stderr.strip()}")
    return done.stdout


def make_pki(node: Node, relay_port: int) -> None:
    ca = pki.Authority(node.pki).create(f"petr4-node-{node.name}")
    api_names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        NODE_IP,
        API_IP,
    ]
    ca.sign("apiserver", "/CN=kube-apiserver", "serverAuth", api_names)
    ca.sign("kubelet-serving", f"/CN={NODE_NAME}", "serverAuth", [NODE_NAME, NODE_IP])
    for client in CLIENTS:
        ca.sign(client.stem, client.subject, "clientAuth")
        server = f"https://{NODE_IP}:6443"
        if client.stem == "admin":  # the host's kubectl and helm, through the relay
            ca.kubeconfig(node.kubeconfig, f"https://127.0.0.1:{relay_port}", client)
        else:
            ca.kubeconfig(node.pki / f"{client.stem}.kubeconfig", server, client)
    ca.service_account_keys()


def start_control_plane(node: Node, starter: Starter, relay_port: int) -> None:
    p, b = node.pki, starter.bin
    starter.start(
        "etcd",
        [
            str(b / "etcd"),
            f"--name={node.name}",
            f"--data-dir={node.state / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            f"--initial-cluster={node.name}=http://127.0.0.1:2380",
            "--log-level=warn",
        ],
    )
    starter.start(
        "kube-apiserver",
        [
            str(b / "kube-apiserver"),
            f"--advertise-address={NODE_IP}",
            "--secure-port=6443",
            "--etcd-servers=http://127.0.0.1:2379",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={p / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
            f"--audit-policy-file={HERE / 'config' / 'audit-policy.yaml'}",
            f"--audit-log-path={node.audit_log}",
            "--audit-log-maxsize=100",
        ],
    )
    relay = [sys.executable, str(HERE / "relay.py"), str(relay_port), str(node.netns)]
    starter.start("relay", [*relay, f"{NODE_IP}:6443"], inside=False)
    wait(
        "the API server",
        lambda: _answers(node, starter.bin, "/readyz"),
        120,
        starter.log("kube-apiserver"),
    )
    kubeconfig = str(p / "kube-controller-manager.kubeconfig")
    starter.start(
        "kube-controller-manager",
        [
            str(b / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ],
    )
    config = node.state / "kube-scheduler.yaml"
    config.write_text(render("kube-scheduler.yaml", pki=str(p)))
    starter.start(
        "kube-scheduler",
        [str(b / "kube-scheduler"), f"--config={config}", "--bind-address=127.0.0.1"],
    )
    wait(
        "the default ServiceAccount",
        lambda: _answers(node, starter.bin, "/api/v1/namespaces/default/serviceaccounts/default"),
        60,
        starter.log("kube-controller-manager"),
    )


def _answers(node: Node, bin_dir: Path, path: str) -> bool:
    try:
        kubectl(node, bin_dir, "get", "--raw", path)
        return True
    except (NodeError, subprocess.TimeoutExpired):
        return False


def start_worker(node: Node, starter: Starter, build: Path) -> None:
    values = {
        "name": node.name,
        "node_name": NODE_NAME,
        "node_ip": NODE_IP,
        "pod_cidr": POD_CIDR,
        "dns_ip": DNS_IP,
        "state": str(node.state),
        "run": str(node.run),
        "pki": str(node.pki),
        "bin": str(starter.bin),
        "pause_image": programs.PAUSE_IMAGE,
        "coredns_image": programs.COREDNS_IMAGE,
    }
    for folder in ("cni", "pod-logs", "kubelet"):
        (node.state / folder).mkdir(parents=True, exist_ok=True)
    (node.state / "cni" / "10-petr4.conflist").write_text(render("cni.conflist", **values))
    (node.state / "resolv.conf").write_text("# no upstream: the namespace has no route out\n")
    for config in ("containerd.toml", "kubelet.yaml", "kube-proxy.yaml"):
        (node.state / config).write_text(render(config, **values))
    host.cgroup_root(node.name)
    starter.start(
        "containerd",
        [str(starter.bin / "containerd"), f"--config={node.state / 'containerd.toml'}"],
    )
    socket_path = node.run / "containerd" / "containerd.sock"
    wait("containerd", socket_path.exists, 30, starter.log("containerd"))
    for archive in sorted((build / "images").glob("*.tar")):
        import_images(node, starter.bin, archive.open("rb"))
    starter.start(
        "kubelet",
        [
            str(starter.bin / "kubelet"),
            f"--config={node.state / 'kubelet.yaml'}",
            f"--kubeconfig={node.pki / 'kubelet.kubeconfig'}",
            f"--root-dir={node.state / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
        ],
    )
    starter.start(
        "kube-proxy",
        [str(starter.bin / "kube-proxy"), f"--config={node.state / 'kube-proxy.yaml'}"],
    )
    kubectl(node, starter.bin, "apply", "-f", "-", stdin=render("coredns.yaml", **values))
    kubectl(node, starter.bin, "apply", "-f", str(HERE / "config" / "storage.yaml"))
    kubectl(node, starter.bin, "apply", "-f", "-", stdin=json.dumps(local_volumes(node)))
    wait(
        f"node {NODE_NAME}",
        lambda: _ready(node, starter.bin, "node", NODE_NAME, ""),
        120,
        starter.log("kubelet"),
    )
    wait(
        "the cluster DNS",
        lambda: _ready(node, starter.bin, "deployment", "coredns", "kube-system"),
        120,
        starter.log("kubelet"),
    )


def local_volumes(node: Node, count: int = 16, size: str = "20Gi") -> dict:
    """``count`` local PersistentVolumes of the default StorageClass, each a folder of the
    node's state; a claim binds one when its pod is scheduled."""
    volumes = []
    for n in range(count):
        folder = node.state / "volumes" / f"pv-{n}"
        folder.mkdir(parents=True)
        volumes.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"local-{n}"},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "standard",
                    "local": {"path": str(folder)},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/hostname",
                                            "operator": "In",
                                            "values": [NODE_NAME],
                                        }
                                    ]
                                }
                            ]
                        }
                    },
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": volumes}


def _ready(node: Node, bin_dir: Path, kind: str, name: str, namespace: str) -> bool:
    where = ["-n", namespace] if namespace else []
    condition = "Ready" if kind == "node" else "Available"
    query = f"jsonpath={{.status.conditions[?(@.type=='{condition}')].status}}"
    try:
        return kubectl(node, bin_dir, *where, "get", kind, name, "-o", query).strip() == "True"
    except (NodeError, subprocess.TimeoutExpired):
        return False


def import_images(node: Node, bin_dir: Path, stream) -> str:
    """``ctr images import`` of one archive read from ``stream``, into the CRI's namespace."""
    address = node.run / "containerd" / "containerd.sock"
    done = subprocess.run(
        [
            str(bin_dir / "ctr"),
            "--address",
            str(address),
            "-n",
            "k8s.io",
            "images",
            "import",
            "--local",
            "--discard-unpacked-layers",
            "-",
        ],
        stdin=stream,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise NodeError(f"ctr images import: {done.stderr.strip()}")
    return done.stdout


def up(node: Node, control_plane_only: bool) -> None:
    host.preflight(worker=not control_plane_only)
    if node.state.exists() or node.run.exists() or node.netns.exists():
        down(node, quiet=True)  # what a crashed earlier run left
    started = time.monotonic()
    build = programs.build(log=lambda line: print(f"node: {line}", flush=True))
    bin_dir = build / "bin"
    for folder in (node.state / "logs", node.run):
        folder.mkdir(parents=True)
    with socket.socket() as probe:  # the relay's port on the host's loopback
        probe.bind(("127.0.0.1", 0))
        relay_port = probe.getsockname()[1]
    make_pki(node, relay_port)
    host.network_namespace(node.name, NODE_IP)
    holder = host.mount_namespace(node.run / "holder.pid", node.state / "var-log", str(node.state))
    starter = Starter(node, bin_dir, holder)
    info = {
        "name": node.name,
        "kubeconfig": str(node.kubeconfig),
        "audit_log": str(node.audit_log),
        "bin": str(bin_dir),
        "versions": json.loads((build / "versions.json").read_text()),
        "worker": not control_plane_only,
        "netns": str(node.netns),
    }
    node.info.write_text(json.dumps(info, indent=2) + "\n")
    start_control_plane(node, starter, relay_port)
    if not control_plane_only:
        start_worker(node, starter, build)
    what = "control plane" if control_plane_only else "node"
    print(f"node: {what} {node.name} ready in {time.monotonic() - started:.0f} s", flush=True)
    print(f"export KUBECONFIG={node.kubeconfig}")


def down(node: Node, quiet: bool = False) -> None:
    """Every process the node started, by pid and by namespace; its mounts, namespace,
    cgroups and files. What is left afterwards is an error naming it."""
    for name in reversed((*CONTROL_PLANE, *WORKER)):
        pid_file = node.run / f"{name}.pid"
        if pid_file.exists():
            host.stop(int(pid_file.read_text()))
    host.kill_cgroup(node.name)  # the pods' processes
    holder_file = node.run / "holder.pid"
    holder = int(holder_file.read_text()) if holder_file.exists() else None
    host.kill_namespace_members(node.netns, holder)  # shims, and anything else inside
    if holder is not None:
        host.stop(holder)
    host.delete_network_namespace(node.name)
    host.remove_cgroup(node.name)
    for folder in (node.run, node.state):
        host.unmount_below(folder)
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last node gone: the parent folder too
            folder.parent.rmdir()
    left = host.leftovers(node.name, node.state, node.run)
    if left:
        raise NodeError(f"node {node.name} left behind: {'; '.join(left)}")
    if not quiet:
        print(f"node: {node.name} is down; nothing of it is left", flush=True)


def status(node: Node, as_json: bool) -> int:
    info = node.read_info()
    running = {}
    for name in (*CONTROL_PLANE, *WORKER):
        pid_file = node.run / f"{name}.pid"
        if pid_file.exists():
            running[name] = host.alive(int(pid_file.read_text()))
    up_now = bool(info) and bool(running) and all(running.values())
    if as_json:
        print(json.dumps(info | {"up": up_now, "processes": running}, indent=2))
    elif not info:
        print(f"node {node.name}: not started (make cluster)")
    else:
        listing = ", ".join(f"{k} {'up' if v else 'DOWN'}" for k, v in running.items())
        print(f"node {node.name}: {listing}\nexport KUBECONFIG={node.kubeconfig}")
    return 0 if up_now else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="petr4", help="the node's name on this host")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="build (once) and start the node")
    start.add_argument("--control-plane-only", action="store_true")
    commands.add_parser("down", help="stop the node and remove everything it made")
    load = commands.add_parser("load", help="copy images from the Docker daemon into the node")
    load.add_argument("images", nargs="+")
    show = commands.add_parser("status", help="what runs; exit 1 unless all of it does")
    show.add_argument("--json", action="store_true")
    commands.add_parser("build", help="only build the programs (cached)")
    args = parser.parse_args(argv)
    node = Node(args.name)
    try:
        if args.command == "build":
            print(programs.build(log=lambda line: print(f"node: {line}", flush=True)))
        elif args.command == "status":
            return status(node, args.json)
        elif os.geteuid() != 0:
            raise NodeError("the node needs root: network namespaces, mounts and cgroups")
        elif args.command == "up":
            up(node, args.control_plane_only)
        elif args.command == "down":
            down(node)
        elif args.command == "load":
            load_images(node, args.images)
    except (NodeError, programs.BuildFailed, host.HostRefused) as error:
        print(f"node: {error}", file=sys.stderr)
        return 1
    return 0


def load_images(node: Node, images: list[str]) -> None:
    """``docker save`` straight into the node's containerd: the names stay the ones Docker
    gave them, as the chart and the dev loop use them."""
    info = node.read_info()
    if not info.get("worker"):
        raise NodeError(f"node {node.name} is not running a kubelet (make cluster)")
    saved = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
    try:
        listing = import_images(node, Path(info["bin"]), saved.stdout)
    finally:
        saved.stdout.close()
        saved_code = saved.wait()
    if saved_code != 0:
        raise NodeError(f"docker save {' '.join(images)} failed (is each image built?)")
    print(listing.strip(), flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
