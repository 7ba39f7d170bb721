"""What `skaffold run` and `skaffold dev` do with skaffold.yaml, for the node `make cluster`
starts: skaffold's module is not served to these machines, so this runs its sequence.

    python scripts/dev_loop.py run [-- HELM FLAGS]   build, load into the node, deploy, wait
    python scripts/dev_loop.py dev [-- HELM FLAGS]   the same, then again at every change to
                                                     an image's inputs or to the chart; on
                                                     Ctrl-C it uninstalls the release and
                                                     removes the images it built

From skaffold.yaml, as skaffold reads it: the artifacts (image and Dockerfile), each tagged
by the digest of its inputs (its inputDigest policy: the Dockerfile and the files it copies),
so an edit rebuilds only the images that copy the edited file; the helm release (chart,
namespace, wait, install and upgrade flags, setValueTemplates with IMAGE_REPO_x, IMAGE_TAG_x
and the environment, setValues); and skaffold's run-id label on every object it deploys
(skaffold.dev/run-id), added by a helm post-renderer, this script itself (Helm keeps its own
app.kubernetes.io/managed-by). An image is loaded into the node (k8s/node/node.py load) only when the
node's kubelet does not list it. Profiles and port forwarding are skaffold's alone: on the
node, prices come from the synthetic series or a CSV (it has no route out), and
`kubectl port-forward` reaches the Services.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts import kube_tools  # noqa: E402
from scripts.build_images import BuildError, build_all  # noqa: E402

RUN_ID = "skaffold.dev/run-id"
_TEMPLATE = re.compile(r'^\{\{\s*\.(\w+)\s*(?:\|\s*default\s+"([^"]*)"\s*)?\}\}$')


class LoopError(RuntimeError):
    """A step failed; the message says which."""


def config() -> dict:
    return yaml.safe_load((REPO / "skaffold.yaml").read_text())


def inputs(dockerfile: Path) -> list[Path]:
    """The files a Dockerfile's COPY and ADD take from the context (not from other stages),
    with the Dockerfile itself: what skaffold's inputDigest hashes."""
    files = {dockerfile}
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if (
            not words
            or words[0] not in ("COPY", "ADD")
            or any(w.startswith("--from") for w in words)
        ):
            continue
        for source in (w for w in words[1:-1] if not w.startswith("--")):
            path = REPO / source
            found = path.rglob("*") if path.is_dir() else [path]
            files |= {f for f in found if f.is_file() and "__pycache__" not in f.parts}
    return sorted(files)


def input_digest(dockerfile: Path) -> str:
    digest = hashlib.sha256()
    for path in inputs(dockerfile):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def artifacts() -> dict[str, Path]:
    """image name -> its Dockerfile."""
    return {
        a["image"]: REPO / a.get("docker", {}).get("dockerfile", "Dockerfile")
        for a in config()["build"]["artifacts"]
    }


def chart_digest(chart: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in chart.rglob("*") if p.is_file()):
        digest.update(path.relative_to(chart).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def value_template(template: str, variables: dict[str, str]) -> str:
    """skaffold's setValueTemplates in the two forms skaffold.yaml uses: ``{{.NAME}}`` and
    ``{{.NAME | default "x"}}``."""
    match = _TEMPLATE.match(template.strip())
    if not match:
        raise LoopError(f"setValueTemplates: {template!r} is not a form this loop knows")
    name, default = match.groups()
    value = variables.get(name) or default
    if value is None:
        raise LoopError(f"setValueTemplates: {name} is not set")
    return value


class Loop:
    def __init__(self, run_id: str, helm_flags: list[str]):
        self.skaffold = config()
        self.release = self.skaffold["deploy"]["helm"]["releases"][0]
        self.flags = self.skaffold["deploy"]["helm"].get("flags", {})
        self.run_id = run_id
        self.helm_flags = helm_flags
        self.helm = str(kube_tools.locate("helm"))
        self.node = [sys.executable, str(REPO / "k8s" / "node" / "node.py")]
        status = subprocess.run([*self.node, "status", "--json"], capture_output=True, text=True)
        node = json.loads(status.stdout or "{}")
        if not node.get("up") or not node.get("worker"):
            raise LoopError("no node runs here: `make cluster` (as root) starts one")
        self.kubectl = str(Path(node["bin"]) / "kubectl")  # the node's own release
        self.env = os.environ | {"KUBECONFIG": node["kubeconfig"]}  # the node, whatever else is set
        self.built: list[str] = []  # what this loop built, removed by dev's clean-up

    def build(self) -> dict[str, str]:
        """Every artifact at the tag of its inputs' digest; built where Docker lacks it."""
        import docker

        client = docker.from_env(timeout=600)
        wanted, refs = {}, {}
        for image, dockerfile in artifacts().items():
            tag = input_digest(dockerfile)
            refs[image] = f"{image}:{tag}"
            try:
                client.images.get(refs[image])
            except docker.errors.ImageNotFound:
                wanted[image.removeprefix("petr4-")] = tag
        if wanted:
            self.built += build_all(wanted, REPO).values()
        return refs

    def load(self, refs: dict[str, str]) -> None:
        """Into the node what its kubelet does not list (as `kind load` would)."""
        listing = self._kubectl("get", "nodes", "-o", "jsonpath={.items[*].status.images[*].names}")
        present = {
            n.removeprefix("docker.io/library/") for n in re.findall(r"[^\s\[\]\",]+", listing)
        }
        missing = [ref for ref in refs.values() if ref not in present]
        if missing:
            done = subprocess.run([*self.node, "load", *missing], capture_output=True, text=True)
            if done.returncode != 0:
                raise LoopError(done.stderr.strip() or "node.py load failed")
            print(f"loaded {', '.join(missing)} into the node", flush=True)

    def deploy(self, refs: dict[str, str]) -> None:
        """helm install (or upgrade, when the release exists) as skaffold runs it."""
        r = self.release
        variables = dict(os.environ)
        for image, ref in refs.items():
            key = image.replace("-", "_")
            variables[f"IMAGE_REPO_{key}"], variables[f"IMAGE_TAG_{key}"] = ref.rsplit(":", 1)
        exists = self._helm("status", r["name"], "-n", r["namespace"], check=False).returncode == 0
        verb = "upgrade" if exists else "install"
        command = [verb, r["name"], str(REPO / r["chartPath"]), "--namespace", r["namespace"]]
        if not exists and r.get("createNamespace"):
            command.append("--create-namespace")
        if r.get("wait"):
            command.append("--wait")
        command += self.flags.get(verb, [])
        for key, template in r.get("setValueTemplates", {}).items():
            command += ["--set-string", f"{key}={value_template(template, variables)}"]
        for key, value in r.get("setValues", {}).items():
            command += ["--set-string", f"{key}={value}"]
        command += ["--post-renderer", sys.executable]  # this script, labelling what helm renders
        for word in (str(Path(__file__).resolve()), "label", self.run_id):
            command += ["--post-renderer-args", word]
        command += self.helm_flags
        print(f"helm {verb} {r['name']} ({', '.join(refs.values())})", flush=True)
        started = time.monotonic()
        self._helm(*command, timeout=3600)
        print(f"deployed in {time.monotonic() - started:.0f} s", flush=True)

    def once(self) -> None:
        refs = self.build()
        self.load(refs)
        self.deploy(refs)

    def state(self) -> tuple[tuple[str, str], ...]:
        chart = REPO / self.release["chartPath"]
        images = tuple((image, input_digest(df)) for image, df in artifacts().items())
        return (*images, ("chart", chart_digest(chart)))

    def watch(self, cleanup: bool) -> None:
        seen = self.state()
        self.once()
        print("watching for changes (Ctrl-C ends the loop)", flush=True)
        # Ctrl-C and SIGTERM end it, even where it was started with SIGINT ignored (as a
        # shell does for a background command): the clean-up below is its promise.
        for ending in (signal.SIGINT, signal.SIGTERM):
            signal.signal(ending, signal.default_int_handler)
        try:
            while True:
                time.sleep(1)
                now = self.state()
                if now != seen:
                    changed = [name for (name, a), (_, b) in zip(seen, now, strict=True) if a != b]
                    print(f"changed: {', '.join(changed)}", flush=True)
                    seen = now
                    try:
                        self.once()
                    except (LoopError, BuildError) as error:  # as skaffold dev: report, go on
                        print(f"dev_loop: {error}", file=sys.stderr, flush=True)
                    print("watching for changes (Ctrl-C ends the loop)", flush=True)
        except KeyboardInterrupt:
            if cleanup:  # as skaffold dev: the release, then the images it built
                r = self.release
                self._helm("uninstall", r["name"], "-n", r["namespace"], "--wait", check=False)
                print(f"uninstalled {r['name']}", flush=True)
                self.prune()

    def prune(self) -> None:
        import docker

        client = docker.from_env(timeout=600)
        for ref in self.built:
            try:
                client.images.remove(ref)
            except docker.errors.APIError:
                continue  # still used: a later build tagged the same image, say
        if self.built:
            print(f"removed {len(self.built)} images it built", flush=True)

    def _helm(self, *args: str, timeout: float = 600, check: bool = True):
        done = subprocess.run(
            [self.helm, *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if check and done.returncode != 0:
            raise LoopError(f"helm {shlex.join(args[:2])}: {done.stderr.strip()}")
        return done

    def _kubectl(self, *args: str) -> str:
        done = subprocess.run(
            [self.kubectl, *args], capture_output=True, text=True, timeout=60, env=self.env
        )
        if done.returncode != 0:
            raise LoopError(f"kubectl {' '.join(args[:2])}: {done.stderr.strip()}")
        return done.stdout


def label(run_id: str) -> int:
    """helm's post-renderer: skaffold's run-id on every object of the rendering on stdin."""
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    for doc in docs:
        labels = doc.setdefault("metadata", {}).setdefault("labels", {}) or {}
        labels[RUN_ID] = run_id
        doc["metadata"]["labels"] = labels
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["label"]:
        return label(argv[1])
    helm_flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["run", "dev"])
    parser.add_argument("--run-id", default="petr4", help="skaffold.dev/run-id of what it deploys")
    parser.add_argument(
        "--cleanup",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="dev: uninstall the release at the end, as skaffold dev does",
    )
    args = parser.parse_args(argv)
    try:
        loop = Loop(args.run_id, helm_flags)
        if args.command == "run":
            loop.once()
        else:
            loop.watch(args.cleanup)
    except (LoopError, BuildError) as error:
        print(f"dev_loop: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
