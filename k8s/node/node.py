"""One node of upstream Kubernetes on this machine, inside a network namespace of its own.

    python3 k8s/node/node.py up [--control-plane-only]   build (once) and start it
    python3 k8s/node/node.py load [--if-missing] IMAGE...  images from Docker into its containerd
    python3 k8s/node/node.py monitoring                  add the monitoring stack (stack.py)
    python3 k8s/node/node.py status [--json]             what runs, and where its kubeconfig is
    python3 k8s/node/node.py down                        stop it and leave the host as it was
    python3 k8s/node/node.py build                       only build the programs

etcd, the API server, the controller manager and the scheduler (control_plane.py), and unless
--control-plane-only containerd with runc, the kubelet, kube-proxy and the cluster DNS
(worker.py), all built from go.mod's modules (programs.py), with certificates made here
(pki.py). Pod and Service addresses exist only inside the network namespace, which has no
route out; the API server reaches the host through a relay on its loopback (relay.py), which
the kubeconfig names. The node's processes share a mount namespace of their own, so that what
they mount never reaches the host's (host.py). Runs as root; stdlib only. ``--name`` runs
another node beside the first (the integration tests' control plane).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import control_plane
import host
import programs
import stack
import worker
from layout import NODE_IP, Node, NodeError, Starter

PROCESSES = (*control_plane.PROCESSES, *worker.PROCESSES)  # started in this order


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
    control_plane.make_pki(node, relay_port)
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
    control_plane.start(node, starter, relay_port)
    if not control_plane_only:
        worker.start(node, starter, build)
    what = "control plane" if control_plane_only else "node"
    print(f"node: {what} {node.name} ready in {time.monotonic() - started:.0f} s", flush=True)
    print(f"export KUBECONFIG={node.kubeconfig}")


def down(node: Node, quiet: bool = False) -> None:
    """Every process the node started, by pid and by namespace; its mounts, namespace,
    cgroups and files. What is left afterwards is an error naming it."""
    for name in reversed(PROCESSES):
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
    for name in PROCESSES:
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
    commands.add_parser(
        "monitoring",
        help="add the Prometheus Operator, Prometheus, Alertmanager, kube-state-metrics",
    )
    load = commands.add_parser("load", help="copy images from the Docker daemon into the node")
    load.add_argument("images", nargs="+")
    load.add_argument(
        "--if-missing",
        action="store_true",
        help="copy only the names the node does not hold (for tags that name their inputs)",
    )
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
            load_images(node, args.images, args.if_missing)
        elif args.command == "monitoring":
            stack.up(node, running(node), log=lambda line: print(f"node: {line}", flush=True))
    except (NodeError, programs.BuildFailed, host.HostRefused) as error:
        print(f"node: {error}", file=sys.stderr)
        return 1
    return 0


def running(node: Node) -> Starter:
    """A Starter for a node already up, with a kubelet."""
    info = node.read_info()
    if not info.get("worker"):
        raise NodeError(f"node {node.name} is not running a kubelet (make cluster)")
    holder = int((node.run / "holder.pid").read_text())
    return Starter(node, Path(info["bin"]), holder)


def load_images(node: Node, images: list[str], if_missing: bool = False) -> None:
    """``docker save`` straight into the node's containerd, each image under every name Docker
    gives it (skaffold deploys a local build by a second tag, its image ID): the names stay
    Docker's, as the chart and skaffold use them. With ``if_missing``, names the node holds
    already are not copied again (tags that name their inputs, as skaffold's do)."""
    starter = running(node)
    names = sorted({name for image in images for name in docker_names(image)})
    if if_missing:
        held = worker.image_names(node, starter.bin)
        if held.issuperset(names):
            print(f"node: it holds {', '.join(names)} already", flush=True)
            return
        names = [name for name in names if name not in held]
    saved = subprocess.Popen(["docker", "save", *names], stdout=subprocess.PIPE)
    try:
        listing = worker.import_images(node, starter.bin, saved.stdout)
    finally:
        saved.stdout.close()
        saved_code = saved.wait()
    if saved_code != 0:
        raise NodeError(f"docker save {' '.join(names)} failed")
    print(listing.strip(), flush=True)


def docker_names(image: str) -> list[str]:
    """Every tag Docker gives ``image``'s image."""
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .RepoTags}}", image],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise NodeError(f"Docker has no image {image} (is it built?): {done.stderr.strip()}")
    return json.loads(done.stdout) or [image]


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
