"""The node's worker half: containerd with runc and the CNI plugins, the kubelet, kube-proxy,
and what a cluster has from its first minute: the cluster DNS and a default StorageClass of
local volumes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import host
import programs
from layout import (
    DNS_IP,
    HERE,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    Node,
    NodeError,
    Starter,
    render,
    wait,
)

PROCESSES = ("containerd", "kubelet", "kube-proxy")
VOLUMES, VOLUME_SIZE = 16, "20Gi"


def start(node: Node, starter: Starter, build: Path) -> None:
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
    for archive in sorted((build / "images").glob("*.tar")):  # the sandbox's and the DNS's
        with archive.open("rb") as stream:
            import_images(node, starter.bin, stream)
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
    starter.kubectl("apply", "-f", "-", stdin=render("coredns.yaml", **values))
    starter.kubectl("apply", "-f", "-", stdin=storage(node))
    condition = "jsonpath={.status.conditions[?(@.type=='%s')].status}"
    node_ready = ("get", "node", NODE_NAME, "-o", condition % "Ready")
    wait(
        f"node {NODE_NAME}",
        lambda: starter.answers(*node_ready) == "True",
        120,
        starter.log("kubelet"),
    )
    dns = ("-n", "kube-system", "get", "deployment", "coredns", "-o", condition % "Available")
    wait("the cluster DNS", lambda: starter.answers(*dns) == "True", 120, starter.log("kubelet"))


def storage(node: Node) -> str:
    """The default StorageClass, and its local volumes: each a folder of the node's state,
    bound to a claim when the claim's pod is scheduled."""
    documents = [(HERE / "config" / "storage.yaml").read_text()]
    for n in range(VOLUMES):
        folder = node.state / "volumes" / f"pv-{n}"
        folder.mkdir(parents=True)
        documents.append(
            render(
                "local-volume.yaml",
                n=str(n),
                size=VOLUME_SIZE,
                path=str(folder),
                node_name=NODE_NAME,
            )
        )
    return "\n---\n".join(documents)


def _ctr(node: Node, bin_dir: Path) -> list[str]:
    address = node.run / "containerd" / "containerd.sock"
    return [str(bin_dir / "ctr"), "--address", str(address), "-n", "k8s.io"]


def image_names(node: Node, bin_dir: Path) -> set[str]:
    """The names containerd holds for the kubelet, as Docker writes them (no docker.io/library/)."""
    done = subprocess.run(
        [*_ctr(node, bin_dir), "images", "ls", "--quiet"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise NodeError(f"ctr images ls: {done.stderr.strip()}")
    return {name.removeprefix("docker.io/library/") for name in done.stdout.split()}


def import_images(node: Node, bin_dir: Path, stream) -> str:
    """``ctr images import`` of one archive read from ``stream``, into the CRI's namespace;
    the layers' compressed copies are let go once unpacked (the snapshots are what runs)."""
    done = subprocess.run(
        [*_ctr(node, bin_dir), "images", "import", "--local", "--discard-unpacked-layers", "-"],
        stdin=stream,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise NodeError(f"ctr images import: {done.stderr.strip()}")
    return done.stdout
