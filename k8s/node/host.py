"""What the node asks of this host, and gives back: the kernel features it needs, checked
before anything starts; its network namespace (no route out) and mount namespace; the pods'
cgroup; its processes stopped by pid and by namespace; and the check that nothing is left."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids")


class HostRefused(RuntimeError):
    """The host lacks what the node needs; the message names it."""


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise HostRefused(f"{' '.join(argv[:4])}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def preflight(worker: bool) -> None:
    """One line naming the first thing missing, before anything is started."""
    packages = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux"}
    packages |= {"mount": "mount", "umount": "mount", "openssl": "openssl", "sysctl": "procps"}
    if worker:
        packages["iptables"] = "iptables"
    for command, package in packages.items():
        if shutil.which(command) is None:
            raise HostRefused(f"the command {command} is missing (Debian's package {package})")
    if not worker:
        return
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise HostRefused("the kernel has no overlay filesystem (containerd's snapshots need it)")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        raise HostRefused(
            "the kernel has no br_netfilter (Services between pods on one bridge need it)"
        )
    if not (CGROUP / "cgroup.controllers").exists():  # cgroup v1: each controller mounted
        for controller in V1_CONTROLLERS:
            if not (CGROUP / controller / "cgroup.procs").exists():
                raise HostRefused(f"the cgroup v1 controller {controller} is not mounted")
    if not Path("/dev/kmsg").exists():
        raise HostRefused("/dev/kmsg is missing (the kubelet watches it for OOM kills)")


def network_namespace(name: str, node_ip: str) -> None:
    """A network namespace whose only address is the node's, on one end of a veth pair whose
    other end is inside it too: a default route exists (Services need one) and leads nowhere."""
    _run("ip", "netns", "add", name)
    for command in (
        ["link", "set", "lo", "up"],
        ["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
        ["addr", "add", f"{node_ip}/24", "dev", "eth0"],
        ["link", "set", "eth0", "up"],
        ["link", "set", "eth1", "up"],
        ["route", "add", "default", "dev", "eth0"],
        ["link", "add", "petr4-probe", "type", "bridge"],  # the CNI plugin's bridge will work
        ["link", "del", "petr4-probe"],
    ):
        _run("ip", "-n", name, *command)
    inside = ["nsenter", f"--net=/run/netns/{name}", "--"]
    _run(
        *inside,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
        "net.bridge.bridge-nf-call-iptables=1",
        "net.ipv4.conf.all.route_localnet=1",
    )
    if shutil.which("iptables"):
        _run(*inside, "iptables", "-t", "nat", "-S")  # netfilter answers inside it


def mount_namespace(pid_file: Path, var_log: Path, mark: str) -> int:
    """A process holding a mount namespace for the node: it receives the host's mounts, and
    its own (overlays, volumes, the pods' namespaces) never reach the host. /var/log inside
    it is the node's folder, where the kubelet keeps its fixed /var/log/containers."""
    var_log.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        # ``mark`` (the node's folder) in its command line: leftovers() can find it
        [
            "unshare",
            "--mount",
            "--propagation",
            "slave",
            "--",
            sys.executable,
            "-c",
            "import signal; signal.pause()",
            mark,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid_file.write_text(str(holder.pid))
    own = os.readlink("/proc/self/ns/mnt")
    deadline = time.monotonic() + 10
    while os.readlink(f"/proc/{holder.pid}/ns/mnt") == own:  # until unshare has run
        if time.monotonic() > deadline or holder.poll() is not None:
            raise HostRefused("unshare --mount did not give the node a mount namespace")
        time.sleep(0.05)
    inside = ["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "--"]
    _run(*inside, "mount", "--make-rshared", "/")
    _run(*inside, "mount", "--bind", str(var_log), "/var/log")
    return holder.pid


def cgroup_root(name: str) -> None:
    """The cgroup the kubelet puts every pod under (its cgroupRoot), in each hierarchy."""
    for hierarchy in _hierarchies():
        folder = hierarchy / name
        folder.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":  # a v1 cpuset takes no task until these are set
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (folder / knob).write_text((hierarchy / knob).read_text())


def _hierarchies() -> list[Path]:
    """Every mounted hierarchy; on a hybrid host that includes the ``unified`` one, where the
    kubelet makes the pods' cgroups too."""
    if (CGROUP / "cgroup.controllers").exists():
        return [CGROUP]
    return [p for p in CGROUP.iterdir() if (p / "cgroup.procs").exists()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop(pid: int, grace: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        if not alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _kill_until_none(find, what: str) -> None:
    deadline = time.monotonic() + 20
    while pids := find():
        if time.monotonic() > deadline:
            raise HostRefused(f"{what} did not end: {sorted(pids)}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _cgroup_pids(name: str) -> set[int]:
    pids = set()
    for hierarchy in _hierarchies():
        for folder, _, _ in os.walk(hierarchy / name):
            try:
                text = (Path(folder) / "cgroup.procs").read_text()
            except OSError:
                continue
            pids |= {int(p) for p in text.split() if alive(int(p))}
    return pids


def kill_cgroup(name: str) -> None:
    """Every process under the node's cgroup: the pods' containers. A frozen cgroup (v1's
    freezer) is thawed first: its tasks would take the SIGKILL only once thawed."""
    for folder, _, files in os.walk(CGROUP / "freezer" / name):
        if "freezer.state" in files:
            with contextlib.suppress(OSError):
                (Path(folder) / "freezer.state").write_text("THAWED")
    _kill_until_none(lambda: _cgroup_pids(name), "the pods' processes")


def _members(link: str, kind: str, skip: int | None) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (skip, os.getpid()):
            continue
        try:
            if os.readlink(entry / "ns" / kind) == link and alive(int(entry.name)):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def kill_namespace_members(netns: Path, holder: int | None) -> None:
    """Every process in the node's network namespace or in its mount namespace (the holder
    itself aside): containerd's shims, and anything started inside by hand."""
    links = []
    if netns.exists():
        links.append((f"net:[{os.stat(netns).st_ino}]", "net"))
    if holder is not None and alive(holder):
        link = os.readlink(f"/proc/{holder}/ns/mnt")
        if link != os.readlink("/proc/self/ns/mnt"):  # never the host's own
            links.append((link, "mnt"))

    def find() -> set[int]:
        return (
            set().union(*(_members(link, kind, holder) for link, kind in links)) if links else set()
        )

    _kill_until_none(find, "the node's processes")


def delete_network_namespace(name: str) -> None:
    if (Path("/run/netns") / name).exists():
        _run("ip", "netns", "delete", name)


def remove_cgroup(name: str) -> None:
    for hierarchy in _hierarchies():
        root = hierarchy / name
        if not root.exists():
            continue
        for folder, _, _ in os.walk(root, topdown=False):
            try:
                os.rmdir(folder)
            except OSError as error:
                raise HostRefused(f"cgroup {folder} cannot be removed: {error.strerror}") from None


def _mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(line.split()[4].replace("\\040", " "))
    return points


def unmount_below(folder: Path) -> None:
    """Unmount (lazily, deepest first) whatever is mounted at or under ``folder`` here."""
    prefix = str(folder)
    for point in sorted(
        (p for p in _mounts() if p == prefix or p.startswith(prefix + "/")), reverse=True
    ):
        subprocess.run(["umount", "--lazy", point], capture_output=True)


def leftovers(name: str, *folders: Path) -> list[str]:
    """What of the node the host still holds: its namespace, mounts, cgroups, processes (each
    names one of ``folders`` or the namespace in its command line)."""
    left = []
    if (Path("/run/netns") / name).exists():
        left.append(f"network namespace {name}")
    for point in _mounts():
        if any(point == str(f) or point.startswith(f"{f}/") for f in folders):
            left.append(f"mount {point}")
    left += [f"cgroup {h / name}" for h in _hierarchies() if (h / name).exists()]
    marks = [str(f) for f in folders] + [f"/run/netns/{name}"]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and alive(int(entry.name)):
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(mark in command for mark in marks):
                left.append(f"process {entry.name} ({command[:80]})")
    left += [f"folder {f}" for f in folders if f.exists()]
    return left
