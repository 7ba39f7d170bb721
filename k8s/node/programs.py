"""The node's programs, built from the modules go.mod pins, and the two images the node needs
from this project: the pod sandbox (pause/) and the cluster DNS (coredns/).

A build is cached outside the clone under a key made of everything it is built from (go.mod,
go.sum, the project's own Go files, the Go release and the recipe below), so it runs once
per pinned version: a changed version is a new key, and the older build is removed. Go's own
build cache for it (about 4 GB) is a folder of its own, removed once the build is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "petr4" / "node"

PAUSE_IMAGE = "petr4.local/pause:1"
COREDNS_IMAGE = "petr4.local/coredns:1"


class BuildFailed(RuntimeError):
    """go refused a module or a build; the message names it."""


@dataclass(frozen=True)
class Group:
    """Programs built by one ``go build``: one module's version flags, one cgo setting."""

    module: str  # whose version go.mod pins (ldflags may name it as {version})
    packages: tuple[str, ...]
    ldflags: str = ""
    cgo: bool = False
    tags: str = ""


_K8S_VERSION = " ".join(
    f"-X {package}.{field}"
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for field in (
        "gitVersion={version}",
        "gitMajor={major}",
        "gitMinor={minor}",
        "gitTreeState=clean",
    )
)
_CNI = "github.com/containernetworking/plugins/plugins"

GROUPS = (
    Group(
        "k8s.io/kubernetes",
        tuple(
            f"k8s.io/kubernetes/cmd/{name}"
            for name in (
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
                "kubectl",
            )
        ),
        _K8S_VERSION,
    ),
    Group(
        "github.com/containerd/containerd/v2",
        tuple(
            f"github.com/containerd/containerd/v2/cmd/{name}"
            for name in ("containerd", "containerd-shim-runc-v2", "ctr")
        ),
        "-X github.com/containerd/containerd/v2/version.Version={version}",
    ),
    # libseccomp through cgo: the chart's pods ask for the RuntimeDefault seccomp profile.
    Group(
        "github.com/opencontainers/runc",
        ("github.com/opencontainers/runc",),
        "-X main.version={bare}",
        cgo=True,
        tags="seccomp urfave_cli_no_docs",
    ),
    Group("go.etcd.io/etcd/server/v3", ("go.etcd.io/etcd/server/v3",)),
    Group(
        "github.com/containernetworking/plugins",
        tuple(
            f"{_CNI}/{p}"
            for p in ("main/bridge", "main/loopback", "ipam/host-local", "meta/portmap")
        ),
        "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion={version}",
    ),
    Group("github.com/coredns/coredns", ("./coredns",)),
    Group("", ("./pause",)),
)
# What a package path builds, where its last element does not say it.
_NAMES = {"go.etcd.io/etcd/server/v3": "etcd"}


def program_name(package: str) -> str:
    return _NAMES.get(package, package.rstrip("/").rsplit("/", 1)[-1])


def _go(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["go", *args],
        cwd=HERE,
        env=os.environ | {"GOTOOLCHAIN": "local", "GOCACHE": str(CACHE / "go-build")} | (env or {}),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        raise BuildFailed(f"go {' '.join(args[:2])}: {lines[-1]}")
    return done.stdout


def build_key() -> str:
    digest = hashlib.sha256()
    for path in sorted([HERE / "go.mod", HERE / "go.sum", *HERE.glob("*/*.go")]):
        digest.update(path.relative_to(HERE).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(_go("version").encode())
    digest.update(repr(GROUPS).encode())
    return digest.hexdigest()[:16]


def versions() -> dict[str, str]:
    """The version go.mod pins for each module with programs."""
    listed = _go(
        "list", "-m", "-f", "{{.Path}} {{.Version}}", *[g.module for g in GROUPS if g.module]
    )
    return dict(line.split() for line in listed.splitlines())


def _ldflags(group: Group, pinned: dict[str, str]) -> str:
    version = pinned.get(group.module, "")
    major, minor = ([*version.lstrip("v").split("."), "", ""])[:2]
    fields = {"version": version, "bare": version.lstrip("v"), "major": major, "minor": minor}
    return f"-s -w {group.ldflags.format(**fields)}".strip()


def build(log=print) -> Path:
    """The folder holding every program and image archive, built if this key has none."""
    key = build_key()
    out = CACHE / key
    if (out / "complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "bin").mkdir(parents=True)
    pinned = versions()
    for group in GROUPS:
        started = time.monotonic()
        env = {"CGO_ENABLED": "1" if group.cgo else "0"}
        args = ["build", "-trimpath", "-ldflags", _ldflags(group, pinned)]
        if group.tags:
            args += ["-tags", group.tags]
        target = str(out / "bin") + "/"
        if len(group.packages) == 1:
            target = str(out / "bin" / program_name(group.packages[0]))
        _go(*args, "-o", target, *group.packages, env=env)
        names = ", ".join(program_name(p) for p in group.packages)
        log(
            f"built {names} ({pinned.get(group.module, 'ours')}) in {time.monotonic() - started:.0f} s"
        )
    (out / "images").mkdir()
    oci_archive(
        out / "bin" / "pause", PAUSE_IMAGE, out / "images" / "pause.tar", user="65535:65535"
    )
    oci_archive(out / "bin" / "coredns", COREDNS_IMAGE, out / "images" / "coredns.tar")
    (out / "versions.json").write_text(json.dumps(pinned, indent=2) + "\n")
    (out / "complete").touch()
    for stale in CACHE.iterdir():  # one build per machine: an older key's is never used again
        if stale.is_dir() and stale.name != key:  # and Go's build cache is not needed again
            shutil.rmtree(stale, ignore_errors=True)
    return out


def _tar_member(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    return info, io.BytesIO(data)


def oci_archive(binary: Path, ref: str, archive: Path, user: str = "") -> None:
    """An OCI image archive of one layer, ``binary`` as its entrypoint, that ``ctr images
    import`` names ``ref``: an image needs no registry and no Docker to be made."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.addfile(*_tar_member(binary.name, binary.read_bytes(), 0o755))
    blobs = {}

    def blob(data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    layer_descriptor = blob(layer.getvalue(), "application/vnd.oci.image.layer.v1.tar")
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": [f"/{binary.name}"], "User": user},
        "rootfs": {"type": "layers", "diff_ids": [layer_descriptor["digest"]]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [layer_descriptor],
    }
    entry = blob(json.dumps(manifest).encode(), manifest["mediaType"])
    entry["annotations"] = {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "manifests": [entry]}
    with tarfile.open(archive, "w") as tar:
        tar.addfile(*_tar_member("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'))
        tar.addfile(*_tar_member("index.json", json.dumps(index).encode()))
        for digest, data in blobs.items():
            tar.addfile(*_tar_member(f"blobs/sha256/{digest.split(':')[1]}", data))
