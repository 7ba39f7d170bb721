"""The README's journey on kind, run as containers: the chart's pods, from ``helm template``,
with the chart's secured defaults (TLS and a token on the predictor, accounts on MLflow).

MLflow, its accounts Job, then the training Job (its init container ingests the synthetic
series), then the predictor until its readiness probe passes on the plaintext health port;
a forecast and the model description from the host over TLS with the token, as NOTES.txt
says, and grpcurl's; its metrics; a second training with the README's command; the
README's rendering that pins version 2, which replaces the predictor's pod; and SIGTERM
within its grace.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import pytest

from scripts.harness.chart import (
    job_named,
    named,
    one_host_flags,
    pod_spec,
    readme_command,
    training_job,
    value_flags,
)
from scripts.harness.processes import BIN, free_port, run_cli

pytestmark = [pytest.mark.containers, pytest.mark.slow]

TICKER = "PETR4.SA"
SERVICE = "petr4.forecast.v1.ForecastService"
# A few epochs on the synthetic series, as the e2e tier trains; the gate admits any v1.
SMALL_TRAINING = ["--max-epochs", "3", "--hidden-size", "16", "--champion-tolerance", "1"]


@pytest.fixture
def ports():
    return {
        "grpc": free_port(),
        "health": free_port(),
        "metrics": free_port(),
        "mlflow": free_port(),
    }


def rendering(helm, ports, *flags: str) -> list[dict]:
    return helm.template(*one_host_flags(ports, SMALL_TRAINING), *flags)


def client_files(pod_host, folder) -> list[str]:
    """petr4-forecast's flags for the CA and a token, taken from the Secrets."""
    ca, token = pod_host.predictor_credentials(folder)
    return ["--tls-ca-file", str(ca), "--token-file", str(token)]


def test_the_readme_journey_runs_as_containers(images, helm, pod_host, ports, tmp_path):
    install = rendering(helm, ports)
    pod_host.use(install)
    target = f"127.0.0.1:{ports['grpc']}"
    secured = client_files(pod_host, tmp_path)

    def forecast_cli(*args: str):
        return run_cli(["petr4-forecast", *args, "--target", target, *secured], {}, timeout=60)

    mlflow = pod_host.pod("mlflow", pod_spec(named(install, "Deployment", "-mlflow"))).start()
    mlflow.wait_ready(120)
    accounts = job_named(install, "petr4-mlflow-accounts")
    pod_host.pod("accounts", pod_spec(accounts)).start().wait(300)

    first_job = training_job(install)
    pod_host.pod("train-1", pod_spec(first_job)).start().wait(900)

    predictor = pod_host.pod("predictor", pod_spec(named(install, "Deployment", "-predictor")))
    predictor.start().wait_ready(120)
    answer = forecast_cli("--ticker", TICKER)
    assert answer.returncode == 0, answer.stderr
    assert "SYNTHETIC" in answer.stdout and f"lstm-{TICKER} v1" in answer.stdout
    assert run_cli(["petr4-forecast", "--target", target, "--ticker", TICKER], {}).returncode == 9
    token = (tmp_path / "petr4-token").read_text().strip()
    grpcurl = [str(BIN / "grpcurl"), "-cacert", secured[1], "-H", f"authorization: Bearer {token}"]
    listed = subprocess.run([*grpcurl, target, "list"], capture_output=True, text=True, timeout=60)
    assert "petr4.forecast.v1.ForecastService" in listed.stdout, listed.stderr
    called = subprocess.run(
        [*grpcurl, "-d", json.dumps({"ticker": TICKER}), target, f"{SERVICE}/Forecast"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(called.stdout)["model"]["version"] == "1", called.stderr
    info = forecast_cli("info")
    assert info.returncode == 0 and f"models:/lstm-{TICKER}@champion" in info.stdout, info.stderr
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics").read()
    assert re.search(rb'petr4_grpc_requests_total\{code="OK",method="Forecast"\} 2\.0', metrics)
    assert b'model_version="1"' in metrics

    train_again = value_flags(readme_command("trainer.job.revision=2"))
    retrained = rendering(helm, ports, *train_again)
    second_job = training_job(retrained)
    assert second_job["metadata"]["name"] != first_job["metadata"]["name"]
    assert named(retrained, "Deployment", "-predictor") == named(
        install, "Deployment", "-predictor"
    )
    trainer = pod_host.pod("train-2", pod_spec(second_job)).start()
    trainer.wait(900)
    assert f"registered lstm-{TICKER} version 2" in trainer.logs()

    pinned = rendering(
        helm, ports, *train_again, *value_flags(readme_command("predictor.model.version=2"))
    )
    assert training_job(pinned) == second_job  # pinning trains nothing
    rolled = pod_spec(named(pinned, "Deployment", "-predictor"))
    assert rolled != predictor.spec  # a new pod template: the Deployment rolls
    grace = predictor.spec["terminationGracePeriodSeconds"]
    ((code, seconds),) = predictor.terminate()
    assert code == 0 and seconds < grace, predictor.logs()[-3000:]

    predictor = pod_host.pod("predictor-v2", rolled).start()
    predictor.wait_ready(120)
    info = forecast_cli("info")
    assert info.returncode == 0, info.stderr
    assert f"lstm-{TICKER} v2 from models:/lstm-{TICKER}/2" in info.stdout
    ((code, seconds),) = predictor.terminate()
    assert code == 0 and seconds < grace
    assert "shutting down: NOT_SERVING" in predictor.logs()
