"""skaffold against the node `make cluster` starts: `make deploy` is `skaffold run`, `make dev`
is `skaffold dev`, both with skaffold.yaml's node profile (chosen by the node's kube context).

    python scripts/skaffold.py run [SKAFFOLD FLAGS]
    python scripts/skaffold.py dev [SKAFFOLD FLAGS]

skaffold is built once from the module k8s/node/skaffold pins (cached outside the clone). This
gives it what it looks for: the node's kubeconfig, the node's kubectl and helm from PyPI on
PATH, this interpreter as the `python` of the node profile's build commands and hooks, and
the global config k8s/node/skaffold/config.yaml. It adds skaffold.yaml's fixed run id (see its
setValues) and --cache-artifacts=false: skaffold does not build an image it finds in Docker,
so its after-build hook would not copy it into a node started since; the build takes Docker's
layer cache instead, and the hook copies only what the node lacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts import kube_tools  # noqa: E402

CONFIG = REPO / "k8s" / "node" / "skaffold" / "config.yaml"
FLAGS = ["--label", "skaffold.dev/run-id=petr4", "--cache-artifacts=false", "--config", str(CONFIG)]
# dev's clean-up removes the images it built, and by default the layers under them: Docker's
# build cache, torch's 6 GB layer among them, which the next build would install again.
DEV_FLAGS = ["--no-prune-children"]


def node() -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "k8s" / "node" / "node.py"), "status", "--json"],
        capture_output=True,
        text=True,
    )
    found = json.loads(done.stdout or "{}")
    if not found.get("up") or not found.get("worker"):
        raise SystemExit("skaffold: no node runs here: `make cluster` (as root) starts one")
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] not in (["run"], ["dev"]):
        print(__doc__, file=sys.stderr)
        return 2
    found = node()
    skaffold = kube_tools.locate("skaffold")
    path = [Path(sys.executable).parent, Path(found["bin"]), kube_tools.locate("helm").parent]
    env = os.environ | {
        "KUBECONFIG": found["kubeconfig"],
        "PATH": os.pathsep.join([*map(str, path), os.environ.get("PATH", "")]),
    }
    os.chdir(REPO)
    flags = FLAGS + (DEV_FLAGS if argv[0] == "dev" else [])
    os.execve(skaffold, [str(skaffold), argv[0], *flags, *argv[1:]], env)


if __name__ == "__main__":
    sys.exit(main())
