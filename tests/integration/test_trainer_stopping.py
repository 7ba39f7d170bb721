"""A training stopped by SIGTERM, as Kubernetes stops a pod it deletes: mid-fit the attempt
fails (exit 143, its run FAILED, nothing registered) so that its Job retries it; once
registration has begun, the pass finishes and every ticker gets its version. The moment is
staged, never timed: the trainer's request at that point is held by a proxy until the signal
is in."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from datetime import date

import pytest
from mlflow import MlflowClient

from scripts.harness.faults import TcpProxy
from scripts.harness.processes import BIN, QUIET_MLFLOW, run_cli, wait_until
from services.core.naming import registered_model_name
from services.ingestion.sources import SyntheticSource
from tests.helpers import SMALL_TRAINING

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIRST_EPOCH_LOGGED = b'"val_loss"'  # Lightning's epoch-end metrics: only fit logs this key
CREATE_VERSION = b"POST /api/2.0/mlflow/model-versions/create"


@pytest.fixture
def snapshots(mlflow_server, tmp_path):
    """Two tickers' synthetic prices, ingested: (tickers, their snapshots' experiment)."""
    tag = uuid.uuid4().hex[:5].upper()
    tickers, experiment = [f"S{tag}.SA", f"T{tag}.SA"], f"prices-stop-{tag}"
    for seed, ticker in enumerate(tickers, 11):
        source = SyntheticSource(seed=seed, first_date=date(2021, 1, 4), end=date(2023, 12, 29))
        source.fetch(ticker, None).to_csv(tmp_path / f"{ticker}.csv")
    done = run_cli(
        [
            *("petr4-ingest", "--tickers", *tickers, "--experiment", experiment),
            *("--source", f"csv:{tmp_path}/{{ticker}}.csv"),
        ],
        {"MLFLOW_TRACKING_URI": mlflow_server.uri},
    )
    assert done.returncode == 0, done.stderr
    return tickers, experiment


def start_training(tickers, experiment, uri: str, log) -> subprocess.Popen:
    args = ["--tickers", *tickers, "--prices-experiment", experiment, *SMALL_TRAINING]
    return subprocess.Popen(
        [str(BIN / "petr4-train"), *args, "--experiment", f"training-{experiment}"],
        env=os.environ | QUIET_MLFLOW | {"MLFLOW_TRACKING_URI": uri},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigterm_mid_fit_fails_the_attempt_and_registers_nothing(
    mlflow_server, snapshots, tmp_path
):
    tickers, experiment = snapshots
    proxy = TcpProxy(mlflow_server.port, hold_containing=FIRST_EPOCH_LOGGED)
    log = tmp_path / "train.log"
    try:
        with log.open("w") as out:
            training = start_training(tickers, experiment, proxy.uri, out)
            try:
                assert proxy.held.wait(600), "the training never logged an epoch"
                training.send_signal(signal.SIGTERM)
                assert training.wait(120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
            finally:
                training.kill()
    finally:
        proxy.release()
        proxy.close()
    assert "stopped by SIGTERM before registering" in log.read_text()
    direct = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    (run,) = direct.search_runs(
        [direct.get_experiment_by_name(f"training-{experiment}").experiment_id]
    )
    assert run.info.status == "FAILED"  # never left RUNNING
    for ticker in tickers:
        name = registered_model_name(ticker)
        assert direct.search_model_versions(f"name = '{name}'") == []


def test_sigterm_during_registration_lets_the_pass_finish(mlflow_server, snapshots, tmp_path):
    tickers, experiment = snapshots
    proxy = TcpProxy(mlflow_server.port, hold=CREATE_VERSION)
    log = tmp_path / "train.log"
    try:
        with log.open("w") as out:
            training = start_training(tickers, experiment, proxy.uri, out)
            try:
                assert proxy.held.wait(600), "the training never reached registration"
                training.send_signal(signal.SIGTERM)
                wait_until(lambda: "SIGTERM during registration" in log.read_text(), 60,
                           "the trainer's note of the signal")  # fmt: skip
                proxy.release()
                assert training.wait(120) == 0, log.read_text()[-3000:]
            finally:
                training.kill()
    finally:
        proxy.release()
        proxy.close()
    direct = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    for ticker in tickers:
        name = registered_model_name(ticker)
        assert [v.version for v in direct.search_model_versions(f"name = '{name}'")] == ["1"]
