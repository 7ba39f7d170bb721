"""The programs that run on the node, built from the modules their go.mod files pin, and the
images made of them; in three bundles: the node's own (go.mod here, with the project's pause/
and coredns/), the monitoring stack's (monitoring/*/go.mod, one module a program, as each
needs its own versions of the Kubernetes libraries), and the host's tools (skaffold/).

A bundle is built once and cached outside the clone under a key made of everything it is built
from (its go.mod and go.sum files, the project's own Go files, the Go release and the recipe
below): a changed version is a new key, and the bundle's older build is removed. Go's own build
cache for it (several GB) is a folder of its own, removed once the build is complete.
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
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "petr4"

PAUSE_IMAGE = "petr4.local/pause:1"
COREDNS_IMAGE = "petr4.local/coredns:1"


class BuildFailed(RuntimeError):
    """go refused a module or a build; the message names it."""


@dataclass(frozen=True)
class Group:
    """Programs built by one ``go build``: one module's version flags, one cgo setting."""

    module: str  # whose version its go.mod pins (ldflags may name it as {version})
    packages: tuple[str, ...]
    ldflags: str = ""
    cgo: bool = False
    tags: str = ""
    folder: str = "."  # the Go module of ours it is built from, under k8s/node


@dataclass(frozen=True)
class Image:
    """An image of one program: its reference, where the binary sits, whom it runs as."""

    program: str
    ref: str
    path: str = ""  # default: /<program>
    user: str = ""


@dataclass(frozen=True)
class Bundle:
    name: str
    groups: tuple[Group, ...]
    images: tuple[Image, ...]


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
_PROMETHEUS_VERSION = "-X github.com/prometheus/common/version.Version={bare}"
_CNI = "github.com/containernetworking/plugins/plugins"
_OPERATOR = "github.com/prometheus-operator/prometheus-operator"

NODE = Bundle(
    "node",
    (
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
    ),
    (Image("pause", PAUSE_IMAGE, user="65535:65535"), Image("coredns", COREDNS_IMAGE)),
)

MONITORING = Bundle(
    "monitoring",
    (
        Group(
            _OPERATOR,
            (f"{_OPERATOR}/cmd/operator", f"{_OPERATOR}/cmd/prometheus-config-reloader"),
            _PROMETHEUS_VERSION,
            folder="monitoring/operator",
        ),
        Group(
            "github.com/prometheus/prometheus",
            ("github.com/prometheus/prometheus/cmd/prometheus",),
            # Prometheus 3.5 is released as the module's v0.305: its own version, in the binary.
            "-X github.com/prometheus/common/version.Version=3.5.0",
            folder="monitoring/prometheus",
        ),
        Group(
            "github.com/prometheus/alertmanager",
            ("github.com/prometheus/alertmanager/cmd/alertmanager",),
            _PROMETHEUS_VERSION,
            folder="monitoring/alertmanager",
        ),
        Group(
            "k8s.io/kube-state-metrics/v2",
            ("k8s.io/kube-state-metrics/v2",),
            _PROMETHEUS_VERSION,
            folder="monitoring/kube-state-metrics",
        ),
    ),
    # Where the operator's pods expect them: it runs the reloader as /bin/prometheus-config-reloader.
    (
        Image("operator", "petr4.local/prometheus-operator:v0.85.0", "/bin/operator"),
        Image(
            "prometheus-config-reloader",
            "petr4.local/prometheus-config-reloader:v0.85.0",
            "/bin/prometheus-config-reloader",
        ),
        Image("prometheus", "petr4.local/prometheus:v3.5.0", "/bin/prometheus"),
        Image("alertmanager", "petr4.local/alertmanager:v0.28.1", "/bin/alertmanager"),
        Image("kube-state-metrics", "petr4.local/kube-state-metrics:v2.20.0"),
    ),
)
# skaffold for the dev loop on the node (skaffold.yaml's node profile): a tool of the host's,
# not the node's, so a bundle of its own that a new node version does not rebuild.
TOOLS = Bundle(
    "tools",
    (
        Group(
            "github.com/GoogleContainerTools/skaffold/v2",
            ("github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold",),
            "-X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version={version}",
            folder="skaffold",
        ),
    ),
    (),
)
# What a package path builds, where its last element does not say it.
_NAMES = {"go.etcd.io/etcd/server/v3": "etcd", "k8s.io/kube-state-metrics/v2": "kube-state-metrics"}


def program_name(package: str) -> str:
    return _NAMES.get(package, package.rstrip("/").rsplit("/", 1)[-1])


def _go(bundle: Bundle, folder: str, *args: str, env: dict[str, str] | None = None) -> str:
    gocache = str(CACHE / bundle.name / "go-build")
    if shutil.which("go") is None:
        raise BuildFailed("go is not installed: the node's programs are built from their modules")
    done = subprocess.run(
        ["go", *args],
        cwd=HERE / folder,
        env=os.environ | {"GOTOOLCHAIN": "local", "GOCACHE": gocache} | (env or {}),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        raise BuildFailed(f"go {' '.join(args[:2])} in k8s/node/{folder}: {lines[-1]}")
    return done.stdout


def _sources(bundle: Bundle) -> list[Path]:
    folders = {HERE / g.folder for g in bundle.groups}
    files = [f / name for f in folders for name in ("go.mod", "go.sum")]
    for group in bundle.groups:
        files += [
            p
            for pkg in group.packages
            if pkg.startswith("./")
            for p in (HERE / group.folder / pkg).glob("*.go")
        ]
    return sorted(files)


def build_key(bundle: Bundle = NODE) -> str:
    digest = hashlib.sha256()
    for path in _sources(bundle):
        digest.update(path.relative_to(HERE).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(_go(bundle, ".", "version").encode())
    digest.update(repr(bundle).encode())
    return digest.hexdigest()[:16]


def versions(bundle: Bundle = NODE) -> dict[str, str]:
    """The version each module with programs is pinned at."""
    pinned = {}
    for group in bundle.groups:
        if group.module:
            listed = _go(bundle, group.folder, "list", "-m", "-f", "{{.Version}}", group.module)
            pinned[group.module] = listed.strip()
    return pinned


def module_dir(bundle: Bundle, module: str) -> Path:
    """Where Go keeps the module's files: its published manifests are applied from there."""
    (group,) = [g for g in bundle.groups if g.module == module]
    return Path(_go(bundle, group.folder, "list", "-m", "-f", "{{.Dir}}", module).strip())


def _ldflags(group: Group, pinned: dict[str, str]) -> str:
    version = pinned.get(group.module, "")
    major, minor = ([*version.lstrip("v").split("."), "", ""])[:2]
    fields = {"version": version, "bare": version.lstrip("v"), "major": major, "minor": minor}
    return f"-s -w {group.ldflags.format(**fields)}".strip()


def build(bundle: Bundle = NODE, log=print) -> Path:
    """The folder holding the bundle's programs and image archives, built if its key has none."""
    key = build_key(bundle)
    root = CACHE / bundle.name
    out = root / key
    if (out / "complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "bin").mkdir(parents=True)
    pinned = versions(bundle)
    for group in bundle.groups:
        started = time.monotonic()
        env = {"CGO_ENABLED": "1" if group.cgo else "0"}
        args = ["build", "-trimpath", "-ldflags", _ldflags(group, pinned)]
        if group.tags:
            args += ["-tags", group.tags]
        target = str(out / "bin") + "/"
        if len(group.packages) == 1:
            target = str(out / "bin" / program_name(group.packages[0]))
        _go(bundle, group.folder, *args, "-o", target, *group.packages, env=env)
        names = ", ".join(program_name(p) for p in group.packages)
        took = time.monotonic() - started
        log(f"built {names} ({pinned.get(group.module, 'ours')}) in {took:.0f} s")
    (out / "images").mkdir()
    for image in bundle.images:
        archive = out / "images" / f"{image.program}.tar"
        oci_archive(out / "bin" / image.program, image, archive)
    (out / "versions.json").write_text(json.dumps(pinned, indent=2) + "\n")
    (out / "complete").touch()
    for stale in root.iterdir():  # one build per bundle: an older key's is never used again,
        if stale.is_dir() and stale.name != key:  # nor Go's build cache
            shutil.rmtree(stale, ignore_errors=True)
    return out


def _tar_member(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    return info, io.BytesIO(data)


def oci_archive(binary: Path, image: Image, archive: Path) -> None:
    """An OCI image archive of one layer, the binary as its entrypoint, that ``ctr images
    import`` names ``image.ref``: an image needs no registry and no Docker to be made."""
    path = image.path or f"/{binary.name}"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.addfile(*_tar_member(path.lstrip("/"), binary.read_bytes(), 0o755))
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
        "config": {"Entrypoint": [path], "User": image.user},
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
        "io.containerd.image.name": image.ref,
        "org.opencontainers.image.ref.name": image.ref.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "manifests": [entry]}
    with tarfile.open(archive, "w") as tar:
        tar.addfile(*_tar_member("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'))
        tar.addfile(*_tar_member("index.json", json.dumps(index).encode()))
        for digest, data in blobs.items():
            tar.addfile(*_tar_member(f"blobs/sha256/{digest.split(':')[1]}", data))
