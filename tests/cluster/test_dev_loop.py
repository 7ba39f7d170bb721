"""`make dev` (`skaffold dev` on the node) run on a copy of the repository: an edit to the
predictor's code rebuilds its image alone and rolls what runs from it (the predictor and the
receiver), nothing else; an edit to the trainer's code trains again; Ctrl-C uninstalls the
release."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from scripts.harness.processes import wait_until
from tests.cluster.test_journey import DEPLOY_VALUES
from tests.helpers import REPO
from tests.kube import skaffold

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(3600)]

WATCHING = "Watching for changes"  # what skaffold dev prints after each deploy


class DevLoop:
    """`make dev` in ``repo``, its output collected line by line."""

    def __init__(self, repo: Path, folder: Path):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            **skaffold("dev", DEPLOY_VALUES, folder, "synthetic", repo),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def deployed(self, times: int, seconds: float = 1800) -> None:
        """Until the loop has deployed ``times`` times and watches again."""
        wait_until(
            lambda: (
                sum(WATCHING in line for line in self.lines) >= times
                or self.process.poll() is not None
            ),
            seconds,
            f"deploy number {times} of the dev loop",
            interval=1,
        )
        assert self.process.poll() is None, "\n".join(self.lines[-30:])


def copy_of_the_repository(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def workloads(kube) -> dict[str, object]:
    """What runs: each Deployment's generation (a changed pod template is a new one, a
    rollout), and the training Job's name (a new one is a new training)."""
    found = {
        d["metadata"]["name"]: d["metadata"]["generation"] for d in kube.get("deployments")["items"]
    }
    (job,) = kube.get("jobs", "-l", "app.kubernetes.io/component=train")["items"]
    return found | {"training job": job["metadata"]["name"]}


def image_of(kube, deployment: str) -> str:
    return kube.get("deployment", deployment)["spec"]["template"]["spec"]["containers"][0]["image"]


def test_an_edit_rolls_only_what_runs_from_the_edited_image(kube, tmp_path):
    repo = copy_of_the_repository(tmp_path / "repo")
    kube.empty_namespace()
    loop = DevLoop(repo, tmp_path)
    try:
        loop.deployed(1)
        first = workloads(kube)

        servicer = repo / "services" / "predictor" / "servicer.py"
        servicer.write_text(servicer.read_text() + "\n# an edit\n")
        loop.deployed(2)
        second = workloads(kube)
        rolled = {name for name in first if first[name] != second[name]}
        assert rolled == {"petr4-predictor", "petr4-retrainer"}, (first, second)
        assert image_of(kube, "petr4-predictor") == image_of(kube, "petr4-retrainer")
        kube.kubectl("rollout", "status", "deployment/petr4-predictor", "--timeout=300s")

        train = repo / "trainer" / "train.py"
        train.write_text(train.read_text() + "\n# an edit\n")
        loop.deployed(3)
        third = workloads(kube)
        rolled = {name for name in second if second[name] != third[name]}
        assert rolled == {"training job"}, (second, third)
        (job,) = kube.get("jobs", "-l", "app.kubernetes.io/component=train")["items"]
        assert job["status"]["succeeded"] == 1  # trained again, with the edited image
    finally:
        loop.process.send_signal(signal.SIGINT)
        try:
            loop.process.wait(600)
        finally:  # whatever came of it, the next test starts on an empty namespace
            loop.process.kill()
            kube.run(["kubectl", "delete", "namespace", "forecast", "--wait"], check=False)
    assert any('release "petr4" uninstalled' in line for line in loop.lines), "\n".join(
        loop.lines[-20:]
    )
