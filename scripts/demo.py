"""`make demo`: the whole loop as local processes, with the same code the cluster runs.

MLflow (SQLite + artifact folder under demo/), ingestion (Yahoo when reachable, else the
seeded synthetic series, announced), a short training, the predictor in the background,
a forecast through the client; then where to look, and everything stopped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from scripts.harness.processes import BIN, QUIET_MLFLOW, MlflowServer, PredictorProcess

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "demo"
TICKER = os.environ.get("DEMO_TICKER", "PETR4.SA")


def port(preferred: int) -> int:
    """The preferred port when free, else any free one."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    print("$ " + " ".join(args), flush=True)
    result = subprocess.run([str(BIN / args[0]), *args[1:]], env=env, text=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: {args[0]} failed with exit code {result.returncode}")
    return result


def started(server, what: str, log: Path):
    """``server`` started, or the demo ends with the tail of its log."""
    try:
        return server.start()
    except (RuntimeError, TimeoutError) as exc:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise SystemExit(
            f"demo: {what} did not come up ({exc}); its log is {log}:\n{tail}"
        ) from None


def champion_or_latest(tracking: str) -> str:
    """No version (serve the champion), or the latest one to pin when none beat naive."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from services.core.naming import CHAMPION_ALIAS, registered_model_name

    client, name = MlflowClient(tracking), registered_model_name(TICKER)
    try:
        version = client.get_model_version_by_alias(name, CHAMPION_ALIAS).version
        print(f"serving the champion, {name} v{version}")
        return ""
    except MlflowException:
        latest = max(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        print(f"no champion yet (no version beat naive): serving the latest, {name} v{latest}")
        return str(latest)


def main() -> int:
    from services.ingestion.sources import yahoo_reachable

    STATE.mkdir(exist_ok=True)
    mlflow = MlflowServer(STATE, port(5000))
    mlflow.log_path = STATE / "mlflow.log"
    grpc_port, metrics_port = port(50051), port(9100)
    env = {
        **os.environ,
        **QUIET_MLFLOW,
        "MLFLOW_TRACKING_URI": mlflow.uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    with contextlib.ExitStack() as running:
        step(
            f"MLflow tracking server on {mlflow.uri} (store: demo/mlflow.db, artifacts: demo/artifacts)"
        )
        running.callback(mlflow.stop)
        started(mlflow, "the MLflow server", mlflow.log_path)

        if yahoo_reachable():
            step(f"Ingest {TICKER} from Yahoo Finance")
            source = "yahoo"
        else:
            step(
                f"Yahoo Finance is unreachable: ingest the SYNTHETIC series as {TICKER} (tagged synthetic)"
            )
            source = "synthetic"
        run(
            "petr4-ingest",
            "--tickers",
            TICKER,
            "--source",
            source,
            "--cache-dir",
            str(STATE / "cache"),
            env=env,
        )

        step("Train a short run (3 walk-forward folds of 5 epochs each) and register it")
        run(
            "petr4-train",
            "--ticker",
            TICKER,
            "--max-epochs",
            "5",
            "--work-dir",
            str(STATE / "train"),
            env=env,
        )
        pinned = champion_or_latest(mlflow.uri)

        step(f"Start the predictor: gRPC on 127.0.0.1:{grpc_port}, metrics on :{metrics_port}")
        predictor = PredictorProcess(
            STATE,
            env,
            "--tickers",
            TICKER,
            "--model-version",
            pinned,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
        )
        predictor.log_path = STATE / "predictor.log"
        running.callback(predictor.stop)
        predictor.start()
        try:
            predictor.wait_serving(120)
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(
                f"demo: the predictor did not serve ({exc}); its log is {predictor.log_path}"
            ) from None

        step("Forecast through the gRPC client")
        run("petr4-forecast", "--target", predictor.target, "--ticker", TICKER, env=env)
        run("petr4-forecast", "info", "--target", predictor.target, env=env)
        with urllib.request.urlopen(predictor.metrics_url) as response:
            lines = [
                line
                for line in response.read().decode().splitlines()
                if line.startswith("petr4_forecast")
            ]
        print("\n".join(lines))
        step("Stop the predictor and MLflow")
    step("Where to look (everything above is stopped; these bring it back)")
    print(
        f"  MLflow UI (runs, metrics, artifacts, registry):\n"
        f"    {BIN / 'mlflow'} server {' '.join(mlflow.store_args)} --port {mlflow.port}\n"
        f"    then open {mlflow.uri}"
    )
    print(
        f"  The predictor, with that server running:\n"
        f"    MLFLOW_TRACKING_URI={mlflow.uri} {BIN / 'petr4-serve'} --tickers {TICKER} "
        f"--grpc-port {grpc_port} --metrics-port {metrics_port}"
        + (f" --model-version {pinned}" if pinned else "")
        + f"\n    then {BIN / 'petr4-forecast'} --target {predictor.target} --ticker {TICKER}, "
        f"and its metrics at {predictor.metrics_url}"
    )
    print(f"  Logs: {predictor.log_path}, {mlflow.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
