"""The node itself (k8s/node/node.py): a second one beside the first, with a pod running, is
stopped and leaves the host as it found it; after a crash, the next start starts clean."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.kube import NODE, node_status

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME = "petr4-check"


def host_state() -> dict[str, object]:
    """What the node must give back: the host's namespaces, mounts, rules and cgroups."""
    iptables = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    rules = [line for line in iptables.splitlines() if not line.startswith("#")]
    mounts = sorted(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    # Its own cgroups only: other nodes' pods and Docker's containers come and go meanwhile.
    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{NAME}*"))
    return {
        "netns": sorted(os.listdir("/run/netns")) if Path("/run/netns").exists() else [],
        "mounts": mounts,
        "iptables": rules,
        "cgroups": cgroups,
        "folders": sorted(str(p) for p in Path("/var/lib/petr4-node").glob("*")),
    }


def node(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*NODE, "--name", NAME, *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def kubectl(status: dict, *args: str) -> str:
    done = subprocess.run(
        [str(Path(status["bin"]) / "kubectl"), "--kubeconfig", status["kubeconfig"], *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def second_node(kube):
    """A node beside the first one (which runs: ``kube``), stopped whatever happens."""
    before = host_state()
    try:
        yield before
    finally:
        subprocess.run([*NODE, "--name", NAME, "down"], capture_output=True, timeout=300)


def test_down_leaves_no_process_mount_namespace_rule_or_cgroup(second_node):
    before = second_node
    node("up")
    status = node_status(NAME)
    assert status["up"] and status["worker"]
    # A pod runs (the cluster DNS): its sandbox, network namespace, mounts and cgroups exist.
    pods = json.loads(kubectl(status, "get", "pods", "-n", "kube-system", "-o", "json"))
    assert [p["status"]["phase"] for p in pods["items"]] == ["Running"]
    during = host_state()
    assert NAME in during["netns"]
    assert during["cgroups"]  # the pods' cgroups
    node("down")
    assert host_state() == before
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _mentions(p, NAME)]
    assert left == []


def _mentions(process: Path, name: str) -> bool:
    try:
        return f"petr4-node/{name}" in (process / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_load_copies_an_image_under_each_of_its_names_once(second_node):
    """What skaffold's build hook on the node does: an image copied under every tag Docker
    gives it (skaffold deploys a second one, its ID), and not again while the node holds them."""
    node("up")
    status = node_status(NAME)
    base = "python:3.11-slim-bookworm"  # the images' base (pulled, or made here once)
    subprocess.run(["bash", str(REPO / "scripts" / "python_base.sh"), base], check=True)
    second = f"petr4-load-check:{NAME}"
    subprocess.run(["docker", "tag", base, second], check=True)
    try:
        first = node("load", "--if-missing", second).stdout
        assert f"docker.io/library/{second}" in first and "docker.io/library/python" in first
        again = node("load", "--if-missing", second).stdout
        assert "already" in again and "unpacking" not in again
        ctr = [str(Path(status["bin"]) / "ctr"), "-n", "k8s.io", "--address"]
        ctr.append(f"/run/petr4-node/{NAME}/containerd/containerd.sock")
        held = subprocess.run(
            [*ctr, "images", "ls", "--quiet"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert f"docker.io/library/{second}" in held  # what the kubelet runs pods from
    finally:
        subprocess.run(["docker", "rmi", second], capture_output=True)
    node("down")


def test_after_a_crash_the_next_start_starts_clean(second_node):
    before = second_node
    node("up")
    status = node_status(NAME)
    run = Path("/run/petr4-node") / NAME
    for pid_file in run.glob("*.pid"):  # every process of it dies at once, as in a crash
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert not node_status(NAME)["up"]
    node("up")  # what the crash left is cleared first
    status = node_status(NAME)
    assert status["up"]
    assert kubectl(status, "get", "nodes", "-o", "name").strip() == "node/petr4"
    node("down")
    assert host_state() == before
