"""A training stopped by SIGTERM, as Kubernetes stops a pod it deletes: mid-fit the attempt
fails (exit 143, its run FAILED, nothing registered) so that its Job retries it; once
registration has begun, the pass finishes and every ticker gets its version. The moment is
staged, never timed: the trainer's request at that point is held by a proxy until the signal
is in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from datetime import date
from pathlib import Path

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


@contextlib.contextmanager
def training_held(mlflow_server, snapshots, log: Path, **hold):
    """The pooled training as a process, its MLflow requests through a proxy holding the
    one ``hold`` names: yields (the process, the proxy) once that request is in flight."""
    tickers, experiment = snapshots
    args = ["--tickers", *tickers, "--prices-experiment", experiment, *SMALL_TRAINING]
    proxy = TcpProxy(mlflow_server.port, **hold)
    try:
        with log.open("w") as out:
            training = subprocess.Popen(
                [str(BIN / "petr4-train"), *args, "--experiment", f"training-{experiment}"],
                env=os.environ | QUIET_MLFLOW | {"MLFLOW_TRACKING_URI": proxy.uri},
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                assert proxy.held.wait(600), f"the training never sent {hold}"
                yield training, proxy
            finally:
                training.kill()
    finally:
        proxy.release()
        proxy.close()


def test_sigterm_mid_fit_fails_the_attempt_and_registers_nothing(
    mlflow_server, snapshots, tmp_path
):
    log = tmp_path / "train.log"
    with training_held(mlflow_server, snapshots, log, hold_containing=FIRST_EPOCH_LOGGED) as (
        training,
        _,
    ):
        training.send_signal(signal.SIGTERM)
        assert training.wait(120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    assert "stopped by SIGTERM before registering" in log.read_text()
    tickers, experiment = snapshots
    direct = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    (run,) = direct.search_runs(
        [direct.get_experiment_by_name(f"training-{experiment}").experiment_id]
    )
    assert run.info.status == "FAILED"  # never left RUNNING
    for ticker in tickers:
        name = registered_model_name(ticker)
        assert direct.search_model_versions(f"name = '{name}'") == []


def test_sigterm_during_registration_lets_the_pass_finish(mlflow_server, snapshots, tmp_path):
    log = tmp_path / "train.log"
    with training_held(mlflow_server, snapshots, log, hold=CREATE_VERSION) as (training, proxy):
        training.send_signal(signal.SIGTERM)
        wait_until(lambda: "SIGTERM during registration" in log.read_text(), 60,
                   "the trainer's note of the signal")  # fmt: skip
        proxy.release()
        assert training.wait(120) == 0, log.read_text()[-3000:]
    direct = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    for ticker in snapshots[0]:
        name = registered_model_name(ticker)
        assert [v.version for v in direct.search_model_versions(f"name = '{name}'")] == ["1"]
