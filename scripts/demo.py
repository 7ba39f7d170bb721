"""`make demo`: the whole loop as local processes, with the same code the cluster runs.

MLflow (SQLite + artifact folder under demo/), ingestion (Yahoo when reachable, else the
seeded synthetic series, announced), a short training, the predictor in the background,
a forecast through the client; then where to look, and everything stopped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "demo"
BIN = Path(sys.executable).parent
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


def wait_for(process: subprocess.Popen, ready, seconds: float, what: str, log: Path) -> None:
    """Until ``ready()``; a process that exits, or a deadline, ends the demo with its log."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            return
        time.sleep(0.3)
    state = (
        f"exited {process.returncode}"
        if process.poll() is not None
        else f"not up in {seconds:.0f} s"
    )
    tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
    raise SystemExit(f"demo: {what} {state}; its log is {log}:\n{tail}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    from services.ingestion.sources import yahoo_reachable

    STATE.mkdir(exist_ok=True)
    mlflow_port, grpc_port, metrics_port = port(5000), port(50051), port(9100)
    tracking = f"http://127.0.0.1:{mlflow_port}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    mlflow_args = [
        "--backend-store-uri",
        f"sqlite:///{STATE / 'mlflow.db'}",
        "--artifacts-destination",
        str(STATE / "mlartifacts"),
    ]
    children: list[subprocess.Popen] = []
    try:
        step(
            f"MLflow tracking server on {tracking} (store: demo/mlflow.db, artifacts: demo/mlartifacts)"
        )
        mlflow_log = STATE / "mlflow.log"
        children.append(
            subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "server",
                    *mlflow_args,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                    "--workers",
                    "1",
                ],
                env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                stdout=mlflow_log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        wait_for(
            children[-1],
            lambda: http_ok(f"{tracking}/health"),
            120,
            "the MLflow server",
            mlflow_log,
        )

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

        step("Train a short run (5 epochs) and register it")
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

        from mlflow import MlflowClient

        from services.core.naming import CHAMPION_ALIAS, registered_model_name

        client = MlflowClient(tracking)
        name = registered_model_name(TICKER)
        try:
            pinned = ""
            version = client.get_model_version_by_alias(name, CHAMPION_ALIAS).version
            print(f"serving the champion, {name} v{version}")
        except Exception:
            pinned = max(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
            print(f"no champion yet (no version beat naive): serving the latest, {name} v{pinned}")

        step(f"Start the predictor: gRPC on 127.0.0.1:{grpc_port}, metrics on :{metrics_port}")
        predictor_log = STATE / "predictor.log"
        children.append(
            subprocess.Popen(
                [
                    str(BIN / "petr4-serve"),
                    "--tickers",
                    TICKER,
                    "--model-version",
                    str(pinned),
                    "--host",
                    "127.0.0.1",
                    "--grpc-port",
                    str(grpc_port),
                    "--metrics-port",
                    str(metrics_port),
                    "--cache-dir",
                    str(STATE / "serve-cache"),
                ],
                env=env,
                stdout=predictor_log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        from services.client.client import ForecastClient

        with ForecastClient(f"127.0.0.1:{grpc_port}") as probe:
            wait_for(children[-1], probe.is_serving, 120, "the predictor", predictor_log)

        step("Forecast through the gRPC client")
        target = f"127.0.0.1:{grpc_port}"
        run("petr4-forecast", "--target", target, "--ticker", TICKER, env=env)
        run("petr4-forecast", "info", "--target", target, env=env)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            lines = [
                line
                for line in response.read().decode().splitlines()
                if line.startswith("petr4_forecast")
            ]
        print("\n".join(lines))

    finally:
        step("Stop the predictor and MLflow")
        for child in reversed(children):
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
    step("Where to look (everything above is stopped; these bring it back)")
    print(
        f"  MLflow UI (runs, metrics, artifacts, registry):\n"
        f"    {BIN / 'mlflow'} server {' '.join(mlflow_args)} --port {mlflow_port}\n"
        f"    then open {tracking}"
    )
    print(
        f"  The predictor, with that server running:\n"
        f"    MLFLOW_TRACKING_URI={tracking} {BIN / 'petr4-serve'} --tickers {TICKER} "
        f"--grpc-port {grpc_port} --metrics-port {metrics_port}"
        + (f" --model-version {pinned}" if pinned else "")
        + "\n"
        f"    then {BIN / 'petr4-forecast'} --target 127.0.0.1:{grpc_port} --ticker {TICKER}, "
        f"and its metrics at http://127.0.0.1:{metrics_port}/metrics"
    )
    print(f"  Logs: {STATE / 'predictor.log'}, {STATE / 'mlflow.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
