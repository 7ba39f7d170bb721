"""petr4-ingest against a real MLflow server, run as users run it."""

from __future__ import annotations

import signal
import subprocess
from datetime import date

import pandas as pd
import pytest
from mlflow import MlflowClient

from scripts.harness.faults import TcpProxy
from scripts.harness.processes import BIN, run_cli, wait_until
from services.core.snapshots import Snapshot, SnapshotStore
from services.ingestion.sources import SyntheticSource, yahoo_reachable

pytestmark = pytest.mark.integration


@pytest.fixture
def history() -> pd.DataFrame:
    """Three years of a realistic series, as a Yahoo CSV would hold them."""
    return SyntheticSource(seed=7, first_date=date(2021, 1, 4), end=date(2023, 12, 29)).fetch(
        "TEST.SA", None
    )


def write_csv(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path)
    return f"csv:{path}"


def ingest(source: str, experiment: str, env: dict, *extra: str):
    return run_cli(
        [
            "petr4-ingest",
            "--tickers",
            "TEST.SA",
            "--source",
            source,
            "--experiment",
            experiment,
            *extra,
        ],
        env,
    )


def committed(frame: pd.DataFrame, experiment: str, env: dict, path) -> Snapshot:
    """Ingest ``frame`` through a CSV and return the snapshot that became the latest."""
    result = ingest(write_csv(frame, path), experiment, env)
    assert result.returncode == 0, result.stderr
    return SnapshotStore(experiment=experiment).latest("TEST.SA")


def runs_of(experiment: str) -> list:
    found = MlflowClient().get_experiment_by_name(experiment)
    return [] if found is None else MlflowClient().search_runs([found.experiment_id])


def test_csv_ingest_commits_a_whole_snapshot(mlflow_env, experiment_name, history, tmp_path):
    result = ingest(write_csv(history, tmp_path / "p.csv"), experiment_name, mlflow_env)
    assert result.returncode == 0, result.stderr
    assert "[1/1] TEST.SA: committed" in result.stdout
    assert "TEST.SA  committed" in result.stdout  # the summary table

    store = SnapshotStore(experiment=experiment_name)
    snapshot = store.latest("TEST.SA")
    assert (snapshot.rows, snapshot.first_date, snapshot.last_date) == (
        len(history),
        "2021-01-04",
        "2023-12-28",  # 29 Dec 2023 was the year's last weekday: no trading
    )
    assert snapshot.source == "csv" and not snapshot.synthetic
    frame = store.load(snapshot)
    pd.testing.assert_frame_equal(frame, history, check_freq=False, check_index_type=False)
    artifacts = {a.path for a in MlflowClient().list_artifacts(snapshot.run_id, "prices")}
    assert artifacts == {"prices/TEST.SA.parquet", "prices/metadata.json"}


def test_incremental_ingest_adds_only_new_days(mlflow_env, experiment_name, history, tmp_path):
    store = SnapshotStore(experiment=experiment_name)
    first = committed(history.iloc[:-10], experiment_name, mlflow_env, tmp_path / "a.csv")

    result = ingest(write_csv(history, tmp_path / "b.csv"), experiment_name, mlflow_env)
    assert result.returncode == 0, result.stderr
    assert "(+10)" in result.stdout
    second = store.latest("TEST.SA")
    assert second.run_id != first.run_id
    frame = store.load(second)
    assert len(frame) == len(history) and frame.index.is_unique

    again = ingest(write_csv(history, tmp_path / "c.csv"), experiment_name, mlflow_env)
    assert again.returncode == 0
    assert "unchanged; no new trading day since the last snapshot" in again.stdout
    assert store.latest("TEST.SA").run_id == second.run_id
    assert len(runs_of(experiment_name)) == 2


def test_synthetic_source_is_tagged_everywhere(mlflow_env, experiment_name):
    result = ingest("synthetic", experiment_name, mlflow_env)
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC series" in result.stdout
    snapshot = SnapshotStore(experiment=experiment_name).latest("TEST.SA")
    assert snapshot.synthetic and snapshot.source == "synthetic"
    assert MlflowClient().get_run(snapshot.run_id).data.tags["synthetic"] == "true"


def test_corrupted_rows_are_refused_and_nothing_is_committed(
    mlflow_env, experiment_name, history, tmp_path
):
    store = SnapshotStore(experiment=experiment_name)
    before = committed(history.iloc[:-20], experiment_name, mlflow_env, tmp_path / "a.csv")

    corrupted = history.copy()
    corrupted.loc["2023-12-20", "Close"] = -1.0
    corrupted.loc["2023-12-21", "Open"] = float("nan")
    result = ingest(write_csv(corrupted, tmp_path / "bad.csv"), experiment_name, mlflow_env)
    assert result.returncode == 1
    assert "FAILED TEST.SA" in result.stderr
    assert "zero or negative prices on 2023-12-20" in result.stderr
    assert "NaN or infinite values on 2023-12-21" in result.stderr
    assert store.latest("TEST.SA") == before
    assert len(runs_of(experiment_name)) == 1


def test_rewritten_history_is_refused(mlflow_env, experiment_name, history, tmp_path):
    store = SnapshotStore(experiment=experiment_name)
    before = committed(history.iloc[:-3], experiment_name, mlflow_env, tmp_path / "a.csv")
    rewritten = history.copy()
    rewritten.loc["2023-12-22", ["Open", "High", "Low", "Close"]] *= 1.1
    result = ingest(write_csv(rewritten, tmp_path / "b.csv"), experiment_name, mlflow_env)
    assert result.returncode == 1
    assert "rewrote stored history beyond 0.10% on 2023-12-22" in result.stderr
    assert store.latest("TEST.SA") == before


def test_failing_source_leaves_latest_unchanged(mlflow_env, experiment_name, history, tmp_path):
    store = SnapshotStore(experiment=experiment_name)
    before = committed(history, experiment_name, mlflow_env, tmp_path / "a.csv")
    result = ingest(f"csv:{tmp_path}/missing-{{ticker}}.csv", experiment_name, mlflow_env)
    assert result.returncode == 1
    assert f"price file {tmp_path}/missing-TEST.SA.csv: no such file" in result.stderr
    assert store.latest("TEST.SA") == before


def test_dry_run_validates_without_committing(mlflow_env, experiment_name, history, tmp_path):
    result = ingest(
        write_csv(history, tmp_path / "a.csv"), experiment_name, mlflow_env, "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "validated" in result.stdout and "nothing committed" in result.stdout
    assert runs_of(experiment_name) == []


def test_sigkill_during_upload_leaves_latest_unchanged(
    mlflow_server, mlflow_env, experiment_name, history, tmp_path
):
    store = SnapshotStore(experiment=experiment_name)
    before = committed(history.iloc[:-5], experiment_name, mlflow_env, tmp_path / "a.csv")

    proxy = TcpProxy(mlflow_server.port, hold=b"PUT /api/2.0/mlflow-artifacts/artifacts/")
    process = subprocess.Popen(
        [
            str(BIN / "petr4-ingest"),
            "--tickers",
            "TEST.SA",
            "--experiment",
            experiment_name,
            "--source",
            write_csv(history, tmp_path / "b.csv"),
        ],
        env={**mlflow_env, "MLFLOW_TRACKING_URI": proxy.uri, "PATH": str(BIN)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(proxy.held.is_set, 60, "the snapshot upload to start")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        proxy.close()
        if process.poll() is None:
            process.kill()
    statuses = sorted(run.info.status for run in runs_of(experiment_name))
    assert statuses == ["FINISHED", "RUNNING"]  # the killed run never finished
    assert store.latest("TEST.SA") == before


def test_yahoo_without_network_fails_clearly(mlflow_env, experiment_name):
    if yahoo_reachable():  # asked here, not at collection: only this test needs the network
        pytest.skip("Yahoo is reachable here; this test is about its absence")
    result = run_cli(
        [
            "petr4-ingest",
            "--tickers",
            "PETR4.SA",
            "--source",
            "yahoo",
            "--experiment",
            experiment_name,
        ],
        mlflow_env,
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        "FAILED PETR4.SA: Yahoo returned no rows for PETR4.SA: network unreachable" in result.stderr
    )
    assert runs_of(experiment_name) == []


def test_shared_history_commits_then_reports_unchanged(mlflow_env, experiment_name, shared_data):
    args = [
        "petr4-ingest",
        "--tickers",
        "PETR4.SA",
        "VALE3.SA",
        "--experiment",
        experiment_name,
        "--source",
        f"csv:{shared_data}/{{ticker}}.csv",
    ]
    first = run_cli(args, mlflow_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("committed") >= 2
    second = run_cli(args, mlflow_env)
    assert second.returncode == 0
    assert second.stdout.count(": unchanged;") == 2
    assert SnapshotStore(experiment=experiment_name).latest("PETR4.SA").rows == 6131


def test_if_missing_skips_tickers_that_have_a_snapshot(
    mlflow_env, experiment_name, history, tmp_path
):
    store = SnapshotStore(experiment=experiment_name)
    first = ingest(
        write_csv(history.iloc[:-5], tmp_path / "a.csv"),
        experiment_name,
        mlflow_env,
        "--if-missing",
    )
    assert first.returncode == 0 and "committed" in first.stdout
    before = store.latest("TEST.SA")
    second = ingest(
        write_csv(history, tmp_path / "b.csv"), experiment_name, mlflow_env, "--if-missing"
    )
    assert second.returncode == 0
    assert "a snapshot exists and --if-missing was given" in second.stdout
    assert store.latest("TEST.SA") == before


def test_the_whole_universe_in_one_run_one_bad_ticker_apart(
    mlflow_env, experiment_name, shared_data, tmp_path
):
    """Every stock of the shared data and one whose file is broken: the broken one fails
    alone, says why, and commits nothing; every other one is committed, and each ticker's
    latest snapshot is then one request away."""
    universe = sorted(p.stem for p in shared_data.glob("*.SA.csv"))
    folder = tmp_path / "universe"
    folder.mkdir()
    for ticker in universe:
        (folder / f"{ticker}.csv").symlink_to(shared_data / f"{ticker}.csv")
    (folder / "BROKEN3.SA.csv").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n")
    tickers = [*universe[:20], "BROKEN3.SA", *universe[20:]]
    done = run_cli(
        [
            "petr4-ingest",
            "--tickers",
            *tickers,
            "--experiment",
            experiment_name,
            "--source",
            f"csv:{folder}/{{ticker}}.csv",
        ],
        mlflow_env,
    )
    assert done.returncode == 1
    failures = [line for line in done.stderr.splitlines() if "FAILED" in line]
    assert failures == [
        f"petr4-ingest: FAILED BROKEN3.SA: price file {folder}/BROKEN3.SA.csv: a header and no rows"
    ]
    assert done.stdout.count(": committed ") == len(universe) >= 42
    latest = SnapshotStore(experiment=experiment_name).latest_of(tickers)
    assert sorted(latest) == universe
