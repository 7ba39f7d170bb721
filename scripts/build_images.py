"""Build the project's images in the local Docker daemon, as skaffold would, without skaffold.

    python scripts/build_images.py [--tag TAG] [trainer] [predictor] [mlflow]

Each Dockerfile.<name> becomes petr4-<name>:TAG (default: the chart's appVersion). Builds use
the host's network, so no Docker bridge is needed. The base, python:3.11-slim-bookworm, comes
from scripts/python_base.sh: pulled, or made from Debian's packages where no registry
answers. For such a stand-in, torch and what it needs come from the wheel cache `make setup`
fills ($PETR4_WHEELS), served on loopback for the build's duration as the index
Dockerfile.trainer's TORCH_INDEX_URL names, so no build downloads them again;
TORCH_INDEX_URL in the environment overrides that choice.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import yaml

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("trainer", "predictor", "mlflow")
BASE = "python:3.11-slim-bookworm"
TORCH = "torch==2.13.0"
# torch and its dependencies, downloaded once (the Makefile's PETR4_WHEELS, the same default)
WHEELS = Path(os.environ.get("PETR4_WHEELS") or Path.home() / ".cache" / "petr4" / "wheels")
# The index's URL is a build argument, and a changed argument rebuilds every later layer:
# a fixed port keeps Docker's layer cache useful from one build to the next.
INDEX_PORT = 8765


class BuildError(RuntimeError):
    pass


def chart_app_version() -> str:
    chart = yaml.safe_load((REPO / "charts" / "petr4" / "Chart.yaml").read_text())
    return str(chart["appVersion"])


def ensure_base(client: docker.DockerClient) -> bool:
    """The base image is present; True when it is a stand-in made from Debian's packages."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "python_base.sh"), BASE], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BuildError(f"no base image {BASE}: {done.stderr.strip()}")
    print(done.stdout.strip(), flush=True)
    return client.images.get(BASE).labels.get("petr4.stand-in") == "true"


def local_torch_index() -> Path:
    """A PEP 503 index (``simple/<project>/<files>``) of the wheel cache, torch and every
    wheel it needs, the cache filled first where it lacks them."""
    download = ["pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(WHEELS)]
    subprocess.run([sys.executable, "-m", *download, TORCH], check=True)
    root = WHEELS.parent / "index"
    shutil.rmtree(root, ignore_errors=True)
    for wheel in WHEELS.glob("*.whl"):
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-", 1)[0]).lower()
        folder = root / "simple" / project
        folder.mkdir(parents=True, exist_ok=True)
        (folder / wheel.name).symlink_to(wheel)
    if not any((root / "simple" / "torch").glob("torch-*.whl")):
        raise BuildError(f"the wheel cache {WHEELS} holds no {TORCH}")
    return root


class LoopbackIndex:
    """``python -m http.server`` on 127.0.0.1 over a folder, stopped by its PID."""

    def __init__(self, folder: Path):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", INDEX_PORT))
            except OSError:  # taken: any free port works, at the price of the layer cache
                sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/simple/"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise BuildError("the loopback wheel index did not start")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def build(
    client: docker.DockerClient,
    name: str,
    tag: str,
    buildargs: dict[str, str],
    context: Path = REPO,
) -> str:
    """Build Dockerfile.<name> as petr4-<name>:<tag>, streaming its log; returns the image ref."""
    ref = f"petr4-{name}:{tag}"
    print(f"build {ref} from Dockerfile.{name}", flush=True)
    started = time.monotonic()
    try:
        previous = client.images.get(ref).id
    except docker.errors.ImageNotFound:
        previous = None
    for chunk in client.api.build(
        path=str(context),
        dockerfile=f"Dockerfile.{name}",
        tag=ref,
        buildargs=buildargs,
        network_mode="host",
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "error" in chunk:
            raise BuildError(f"{ref}: {chunk['error'].strip()}")
        text = chunk.get("stream", "")
        if text.strip():
            print(f"  {text.rstrip()}", flush=True)
    image = client.images.get(ref)
    if previous not in (None, image.id) and not client.images.get(previous).tags:
        # The image this tag named before is now nameless: it would only take disk space.
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(previous)
    size = image.attrs["Size"] / 1e6
    print(f"built {ref}: {size:.0f} MB in {time.monotonic() - started:.0f} s", flush=True)
    return ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "images", nargs="*", metavar="IMAGE", help=f"of {', '.join(IMAGES)} (default: all)"
    )
    parser.add_argument("--tag", default=None, help="image tag (default: the chart's appVersion)")
    parser.add_argument(
        "--context", type=Path, default=REPO, help="the build context (default: this repository)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.images) - set(IMAGES))
    if unknown:
        parser.error(f"unknown image {', '.join(unknown)}; choose from {', '.join(IMAGES)}")
    tag = args.tag or chart_app_version()
    try:
        build_all({name: tag for name in args.images or IMAGES}, args.context)
    except BuildError as exc:
        print(f"build_images: {exc}", file=sys.stderr)
        return 1
    return 0


def build_all(tags: dict[str, str], context: Path = REPO) -> dict[str, str]:
    """Build each image named in ``tags`` (trainer, predictor, mlflow) with its tag; returns
    the references built. BuildError says what went wrong."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise BuildError(f"no Docker daemon answers ({exc}); set DOCKER_HOST") from None
    index = None
    try:
        stand_in = ensure_base(client)
        buildargs = {}
        if "TORCH_INDEX_URL" in os.environ:
            buildargs["TORCH_INDEX_URL"] = os.environ["TORCH_INDEX_URL"]
        elif stand_in and "trainer" in tags:
            index = LoopbackIndex(local_torch_index())
            buildargs["TORCH_INDEX_URL"] = index.url
            print(f"torch from this machine's wheel cache, served at {index.url}", flush=True)
        return {
            name: build(client, name, tag, buildargs if name == "trainer" else {}, context)
            for name, tag in tags.items()
        }
    except subprocess.CalledProcessError as exc:
        raise BuildError(str(exc)) from None
    finally:
        if index is not None:
            index.close()


if __name__ == "__main__":
    sys.exit(main())
