"""The README's journey on the node, step by step, as a user runs it: deploy as `make deploy`
does (skaffold run's sequence), forecast over TLS with the token through a port-forward (the
client and grpcurl), helm test, a training whose pod is deleted mid-run, a rollout with a
caller inside the cluster counting failures, a rollback, the per-ticker Indexed Job, the
retraining receiver with its own ServiceAccount, the scheduled retraining it starts once the
alert's has ended, and a ticker with prices and no model.

The steps share one release and run in order; each asserts what its own step did.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from scripts.check_cluster import start_caller, stop_caller, wait_for_version
from scripts.harness.chart import readme_command
from scripts.harness.processes import free_port, http_ok, run_cli, wait_until
from services.core import tokens
from tests.helpers import REPO, SCHEMAS
from tests.kube import FrozenPod, sigterm_pending

# A step waits for trainings and rollouts; the first also builds and loads the images.
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(3600)]

TICKERS = ["PETR4.SA", "VALE3.SA", "ITUB4.SA"]
MAX_EPOCHS = 2
# What a user's `make deploy` gets, with three tickers and the short recipe.
DEPLOY_VALUES = {
    "tickers": TICKERS,
    "trainer": {
        "extraArgs": ["--folds", "1", "--max-epochs", str(MAX_EPOCHS), "--champion-tolerance", "1"]
    },
}


@pytest.fixture(scope="module")
def release(kube, tmp_path_factory):
    """The monitoring CRDs, then the release as `make deploy` installs it."""
    kube.empty_namespace()
    for crd in sorted(SCHEMAS.glob("crd-*.yaml")):
        kube.run(["kubectl", "apply", "--server-side", "-f", str(crd)])
    kube.deploy(DEPLOY_VALUES, tmp_path_factory.mktemp("deploy"))
    yield kube
    kube.run(["helm", "-n", "forecast", "uninstall", "petr4", "--wait"], check=False)
    # What the chart keeps past an uninstall (MLflow's volume and the Secrets its Job made).
    kube.run(["kubectl", "delete", "namespace", "forecast", "--wait"], check=False)


@pytest.fixture(scope="module")
def mlflow(release):
    """MLflow's client as the chart's admin, through a port-forward of its Service."""
    from mlflow import MlflowClient

    port = free_port()
    forward = release.forward("service/petr4-mlflow", port, 5000)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 60, "MLflow's port-forward")
        with pytest.MonkeyPatch.context() as env:
            env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            env.setenv(
                "MLFLOW_TRACKING_PASSWORD",
                release.secret("petr4-mlflow-admin", "password").decode(),
            )
            uri = f"http://127.0.0.1:{port}"
            yield MlflowClient(uri, registry_uri=uri)
    finally:
        forward.terminate()
        forward.wait()


def versions(mlflow, ticker: str) -> dict[str, str]:
    """version -> run id, of every registered version of ``ticker``'s model."""
    return {v.version: v.run_id for v in mlflow.search_model_versions(f"name = 'lstm-{ticker}'")}


class Predictor:
    """The README's client lines against a port-forward of the predictor's Service."""

    def __init__(self, kube, folder: Path):
        (folder / "petr4-ca.crt").write_bytes(kube.secret("petr4-predictor-tls", "ca.crt"))
        token = tokens.parse(kube.secret("petr4-predictor-tokens", "tokens").decode())[0]
        (folder / "petr4-token").write_text(token + "\n")
        self.folder, self.port = folder, free_port()
        self.forward = kube.forward("service/petr4-predictor", self.port, 50051)

    def cli(self, *args: str):
        """The README's forecast line at this port-forward, for the ticker given here."""
        words = self._readme("petr4-forecast --target")
        return run_cli([*words[: words.index("--ticker")], *args], {}, timeout=60, cwd=self.folder)

    def info(self) -> str:
        """What the README's info line prints at this port-forward."""
        done = run_cli(self._readme("petr4-forecast info"), {}, timeout=60, cwd=self.folder)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def _readme(self, needle: str) -> list[str]:
        line = readme_command(needle, program="petr4-forecast")
        return [w.replace("localhost:50051", f"localhost:{self.port}") for w in line]

    def ready(self) -> bool:
        return self.cli("--ticker", TICKERS[0]).returncode == 0

    def close(self):
        self.forward.terminate()
        self.forward.wait()


@pytest.fixture
def predictor(release, tmp_path):
    client = Predictor(release, tmp_path)
    try:
        wait_until(client.ready, 120, "the predictor through its port-forward", interval=1)
        yield client
    finally:
        client.close()


def test_make_deploy_trains_registers_and_serves_through_accounts(release, mlflow):
    deployment = release.get("deployment", "petr4-predictor")
    assert deployment["metadata"]["labels"]["skaffold.dev/run-id"] == "petr4"  # as skaffold does
    (job,) = release.get("jobs", "-l", "app.kubernetes.io/component=train")["items"]
    assert job["status"]["succeeded"] == 1
    runs = {t: versions(mlflow, t) for t in TICKERS}
    assert all(list(v) == ["1"] for v in runs.values()), runs
    assert len({v["1"] for v in runs.values()}) == 1  # one pooled run registered all three
    run = mlflow.get_run(runs[TICKERS[0]]["1"])
    assert run.info.user_id == "petr4-train"  # through the trainer's own MLflow account


def test_the_secrets_are_the_clusters_own_and_not_in_the_release(release):
    """Made by the hook Job before anything mounted them; the release's stored manifests hold
    none, and the hook's own objects are gone once it succeeded."""
    manifest = release.helm("-n", "forecast", "get", "manifest", "petr4")
    assert "kind: Secret" not in manifest and "PRIVATE KEY" not in manifest
    made = release.get("secrets", "-l", "app.kubernetes.io/instance=petr4")["items"]
    assert {s["metadata"]["name"] for s in made} >= {
        "petr4-mlflow-admin",
        "petr4-mlflow-user-train",
        "petr4-predictor-tls",
        "petr4-predictor-tokens",
        "petr4-retrainer-token",
    }
    assert all(s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for s in made)
    for kind in ("job", "role", "rolebinding", "serviceaccount", "configmap"):
        assert release.kubectl("get", kind, "petr4-secrets", "--ignore-not-found") == "", kind


def test_the_readme_forecasts_over_tls_with_the_token_and_grpcurl_lists(predictor):
    for ticker in TICKERS:
        answer = predictor.cli("--ticker", ticker)
        assert answer.returncode == 0 and f"lstm-{ticker} v1" in answer.stdout, answer.stderr
    grpcurl = [
        "grpcurl",
        "-cacert",
        "petr4-ca.crt",
        "-H",
        f"authorization: Bearer {(predictor.folder / 'petr4-token').read_text().strip()}",
        f"localhost:{predictor.port}",
        "list",
    ]
    listed = run_cli(grpcurl, {}, timeout=60, cwd=predictor.folder)
    assert listed.returncode == 0 and "petr4.forecast.v1" in listed.stdout, listed.stderr


def test_helm_test_passes(release):
    release.run(readme_command("helm -n forecast test"))


def test_a_training_pod_deleted_mid_run_is_retried_and_registers_once(release, mlflow):
    """The README's second training, its first pod deleted in the middle of its fit: the
    attempt fails on the SIGTERM, its run is marked FAILED, the Job retries, and each ticker
    gets one new version, whole. The moment is checked with the pod frozen, never timed."""
    before = {t: versions(mlflow, t) for t in TICKERS}
    upgrade = readme_command("trainer.job.revision=2")
    helm = subprocess.Popen(
        [release.helm_bin, *upgrade[1:]],
        cwd=REPO,
        env=os.environ | {"KUBECONFIG": release.kubeconfig},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pod = wait_until(lambda: training_pod(release), 900, "the second training's pod", interval=1)
    frozen = FrozenPod(pod["metadata"]["uid"])
    try:
        run_id = freeze_mid_fit(frozen, mlflow)
        trainer = frozen.pid("petr4-train")
        release.kubectl("delete", "pod", pod["metadata"]["name"], "--wait=false")
        wait_until(lambda: sigterm_pending(trainer), 120, "the kubelet's SIGTERM", interval=0.2)
    finally:
        frozen.thaw()  # it takes the SIGTERM inside fit
    output, _ = helm.communicate(timeout=1800)
    assert helm.returncode == 0, output
    (job,) = release.get("jobs", "-l", "app.kubernetes.io/component=train")["items"]
    assert job["status"]["succeeded"] == 1 and job["status"].get("failed", 0) == 1  # retried
    assert mlflow.get_run(run_id).info.status == "FAILED"
    for ticker in TICKERS:  # one new version each, from the retry, and whole
        after = versions(mlflow, ticker)
        assert sorted(after) == sorted([*before[ticker], "2"]), after
        assert after["2"] != run_id
        files = {a.path for a in mlflow.list_artifacts(after["2"], "model")}
        assert {"model/model.onnx", "model/scalers.json", "model/metadata.json"} <= files


def training_pod(kube) -> dict | None:
    """The training Job's pod once its trainer container runs (its ingest has finished)."""
    for pod in kube.get("pods", "-l", "app.kubernetes.io/component=train")["items"]:
        states = pod["status"].get("containerStatuses", [])
        if any(s["name"] == "train" and "running" in s["state"] for s in states):
            return pod
    return None


def freeze_mid_fit(frozen: FrozenPod, mlflow) -> str:
    """Freezes the pod at a moment its run has logged the first epoch and not the last
    (DEPLOY_VALUES' two; the patience of three never stops it sooner): it is inside fit then.
    Between checks it runs for 20 ms, far less than an epoch. Returns the run's id."""
    experiment = mlflow.get_experiment_by_name("petr4-training")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        frozen.freeze()
        for run in mlflow.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"):
            epochs = len(mlflow.get_metric_history(run.info.run_id, "val_loss"))
            assert epochs < MAX_EPOCHS, "its fit ended between two checks"
            if epochs:
                return run.info.run_id
        frozen.thaw()
        time.sleep(0.02)
    raise TimeoutError("the second training logged no epoch in 900 s")


def served(kube, folder: Path) -> str:
    """The predictor's `info`, through a port-forward made now: one made before a rollout
    ends with the pod it went to (the README restarts it)."""
    kube.kubectl("rollout", "status", "deployment/petr4-predictor", "--timeout=300s")
    client = Predictor(kube, folder)
    try:
        wait_until(client.ready, 120, "the predictor through its port-forward", interval=1)
        return client.info()
    finally:
        client.close()


def test_a_pinned_rollout_loses_no_call_and_rolls_back(release, tmp_path):
    """Version 2 is the champion (the journey's gate is wide): the predictor follows the
    alias to it at a refresh, which the caller may or may not see happen; then the README
    pins it and the pods roll one by one under the caller's calls, none of which fails."""
    start_caller(release.kubectl)  # inside the cluster, through the Service, over TLS
    try:
        wait_for_version("2", release.kubectl)
        release.run(readme_command("predictor.model.version=2"))
    finally:
        counts = stop_caller(release.kubectl)
    assert counts["failed"] == [] and counts["versions"] in (["1", "2"], ["2"]), counts
    assert "from models:/lstm-PETR4.SA/2" in served(release, tmp_path)
    release.run(readme_command("helm -n forecast rollback"))
    assert "from models:/lstm-PETR4.SA@champion" in served(release, tmp_path)


def test_the_per_ticker_indexed_job_trains_each_ticker(release, mlflow):
    release.helm(
        "-n", "forecast", "upgrade", "petr4", "charts/petr4", "--reuse-values",
        "--set", "trainer.mode=per-ticker", "--wait", "--wait-for-jobs", "--timeout", "30m",
    )  # fmt: skip
    (job,) = release.get("jobs", "-l", "app.kubernetes.io/component=train")["items"]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    assert job["status"]["succeeded"] == 3
    newest = {t: versions(mlflow, t)["3"] for t in TICKERS}
    assert len(set(newest.values())) == 3  # a run of its own for each ticker


def test_the_receiver_starts_a_job_and_its_role_is_enforced(release):
    """Within a day of the last training it starts none (its cooldown); with none, one."""
    # The Indexed Job trained it minutes ago.
    assert release.post_alert("Petr4RealizedMAEHigh", TICKERS[1]) == "cooldown"
    release.helm(
        "-n", "forecast", "upgrade", "petr4", "charts/petr4", "--reuse-values",
        "--set", "retrainer.cooldownSeconds=0", "--wait", "--timeout", "10m",
    )  # fmt: skip
    assert release.post_alert("Petr4RealizedMAEHigh", TICKERS[1]) == "started"
    (job,) = release.get("jobs", "-l", "petr4.io/trigger=alert")["items"]
    assert job["metadata"]["annotations"]["petr4.io/alert"] == "Petr4RealizedMAEHigh"
    # The receiver's own identity, from inside its pod: what its Role does not grant, the API
    # server refuses.
    probe = (
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "for call in (lambda: client.CoreV1Api().list_namespaced_secret('forecast'),\n"
        "             lambda: client.BatchV1Api().delete_namespaced_job('x', 'forecast')):\n"
        "    try:\n"
        "        call(); print('allowed')\n"
        "    except client.ApiException as error:\n"
        "        print(error.status)\n"
    )
    answers = release.kubectl("exec", "deploy/petr4-retrainer", "--", "python", "-c", probe)
    assert answers.split() == ["403", "403"], answers


def test_the_schedule_trains_after_the_alert_s_training_never_beside_it(release):
    """The retraining CronJob's run, made now as `kubectl create job --from` makes it, while
    the alert's training of the step before runs: its request waits through the Service
    until that one has ended, then the receiver starts the scheduled training."""
    (alerted,) = release.get("jobs", "-l", "petr4.io/trigger=alert")["items"]
    release.helm(
        "-n", "forecast", "upgrade", "petr4", "charts/petr4", "--reuse-values",
        "--set", "trainer.schedule.enabled=true", "--wait", "--timeout", "10m",
    )  # fmt: skip
    release.kubectl("create", "job", "--from=cronjob/petr4-retrain", "retrain-now")
    name = alerted["metadata"]["name"]

    def told_to_wait_or_too_late() -> bool:
        done = release.get("job", name)["status"].get("completionTime")
        logs = release.run(
            ["kubectl", "-n", "forecast", "logs", "job/retrain-now"], check=False
        ).stdout
        return bool(done) or f"training Job {name} runs" in logs

    wait_until(told_to_wait_or_too_late, 900, "the scheduled request's first answer", interval=1)
    release.kubectl("wait", "--for=condition=Complete", "job/retrain-now", "--timeout=1200s")
    (scheduled,) = release.get("jobs", "-l", "petr4.io/trigger=schedule")["items"]
    alert_ended = release.get("job", name)["status"]["completionTime"]
    assert scheduled["metadata"]["creationTimestamp"] >= alert_ended  # after it, not beside it
    assert scheduled["metadata"]["name"] in release.kubectl("logs", "job/retrain-now")
    release.kubectl(
        "wait", "--for=condition=Complete", f"job/{scheduled['metadata']['name']}",
        "--timeout=1200s",
    )  # fmt: skip


def test_a_ticker_with_prices_and_no_model_is_unavailable_while_the_others_serve(release, tmp_path):
    tickers = [*TICKERS, "BBDC4.SA"]
    release.helm(
        "-n", "forecast", "upgrade", "petr4", "charts/petr4", "--reuse-values",
        "--set-json", f"tickers={json.dumps(tickers)}", "--set", "trainer.job.enabled=false",
        "--wait", "--timeout", "10m",
    )  # fmt: skip
    release.kubectl("create", "job", "--from=cronjob/petr4-ingest", "ingest-now")
    release.kubectl("wait", "--for=condition=Complete", "job/ingest-now", "--timeout=600s")
    log = release.kubectl("logs", "job/ingest-now")
    assert re.search(r"BBDC4\.SA.*committed", log), log  # the CronJob's run commits prices
    client = Predictor(release, tmp_path)
    try:
        wait_until(client.ready, 120, "the predictor through its port-forward", interval=1)
        answer = client.cli("--ticker", "BBDC4.SA")
        assert answer.returncode == 4, answer.stderr  # UNAVAILABLE, saying why
        assert "no version of lstm-BBDC4.SA has the alias 'champion' yet" in answer.stderr
        assert client.cli("--ticker", TICKERS[0]).returncode == 0
    finally:
        client.close()
