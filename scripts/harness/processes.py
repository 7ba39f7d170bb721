"""Real processes on free loopback ports, started and stopped the way users run them: an
MLflow server, the console scripts, the predictor and the retraining receiver. Tests,
benchmarks and the demo share them; monitoring.py has Prometheus and Alertmanager, faults.py
a proxy that stages failures."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


# Every process started here, MLflow's server and clients alike, keeps MLflow's telemetry off.
QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true"}

T = TypeVar("T")


_HANDED_OUT: set[int] = set()
_RANDOM = random.SystemRandom()  # not the seeded generator tests may set
LOWEST_PORT = 10000


def _ephemeral_start() -> int:
    """The first port the kernel gives outgoing connections (Linux's default: 32768)."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


EPHEMERAL_START = _ephemeral_start()


def free_port() -> int:
    """A loopback port nothing listens on, for a server about to start, never one handed out
    before. Below the ephemeral range: a port bind(0) gives is an ephemeral one, which any
    outgoing connection (an MLflow or gRPC client's) may take before the server binds it."""
    while True:
        port = _RANDOM.randrange(LOWEST_PORT, EPHEMERAL_START)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken
        _HANDED_OUT.add(port)
        return port


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """What ``predicate`` returns once it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class LoggedProcess:
    """A child process with its output in a log file: started, waited for, stopped.

    ``stop`` asks it to end (SIGTERM), kills it after ``stop_grace`` seconds (at once when
    that is 0) and closes the log; it is safe to call at any point, and more than once.
    """

    stop_grace: float = 15
    process: subprocess.Popen | None = None

    def _launch(self, args: list[str], env: dict[str, str] | None, log_path: Path) -> None:
        self.log = log_path.open("w")
        self.process = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def _wait_ready(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Until ``ready()``; a timeout or an early exit stops the process and says why."""
        try:
            wait_until(lambda: self.process.poll() is not None or ready(), timeout, what)
        except BaseException:
            self.stop()  # a timed-out start leaves nothing running
            raise
        if self.process.poll() is not None:
            code = self.process.returncode
            self.stop()
            raise RuntimeError(f"{what}: exited {code}: {Path(self.log.name).read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None and self.stop_grace:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.stop_grace)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


class MlflowServer(LoggedProcess):
    """A real, lean MLflow tracking server: a SQLite store and proxied artifacts in ``root``.

    With ``admin_password`` it runs MLflow's basic-auth app as the chart does: nobody gets
    in without a user (default permission NO_PERMISSIONS), the user store beside the runs."""

    def __init__(
        self,
        root: Path,
        port: int = 0,
        admin_password: str | None = None,
        credential_cache_seconds: int | None = None,
    ):
        self.root = root
        self.admin_password = admin_password
        self.credential_cache_seconds = credential_cache_seconds  # None: the chart's default
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "mlflow-server.log"
        self.store_args = [
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ]

    def start(self, timeout: float = 90) -> MlflowServer:
        env = {**os.environ, **QUIET_MLFLOW, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        command = [str(BIN / "mlflow"), "server", *self.store_args]
        if self.admin_password is not None:
            env |= {
                "MLFLOW_AUTH_CONFIG_PATH": str(self._auth_config()),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-test-secret-key",
            }
            command += ["--app-name", "basic-auth"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        self._launch(command, env, self.log_path)
        self._wait_ready(lambda: http_ok(f"{self.uri}/health"), timeout, "the MLflow server")
        return self

    def _auth_config(self) -> Path:
        """The basic-auth configuration as the chart's own init step writes it."""
        import yaml

        values = yaml.safe_load((REPO / "charts" / "petr4" / "values.yaml").read_text())
        seconds = self.credential_cache_seconds
        if seconds is None:
            seconds = values["mlflow"]["auth"]["credentialCacheSeconds"]
        password_file = self.root / "admin-password"
        password_file.write_text(self.admin_password)
        config = self.root / "basic_auth.ini"
        subprocess.run(
            [
                sys.executable,
                str(REPO / "charts" / "petr4" / "files" / "mlflow-auth-config.py"),
                str(config),
            ],
            env={
                **os.environ,
                "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(password_file),
                "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{self.root / 'basic_auth.db'}",
                "MLFLOW_AUTH_CACHE_TTL_SECONDS": str(seconds),
            },
            check=True,
        )
        return config


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


class PredictorProcess(LoggedProcess):
    """``petr4-serve`` as a real process on free ports, as the Deployment runs it."""

    stop_grace = 0  # killed: tests that want its SIGTERM path call terminate()

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        *args: str,
        grpc_port: int = 0,
        metrics_port: int = 0,
        health_port: int | None = None,
    ):
        """With ``health_port`` (0: a free one) health is also served there, in plaintext,
        and that is where readiness is asked (the gRPC port may speak TLS and want tokens)."""
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.target = f"127.0.0.1:{self.grpc_port}"
        if health_port is not None:
            health_port = health_port or free_port()
            args = (*args, "--health-port", str(health_port))
        self.health_target = f"127.0.0.1:{health_port}" if health_port else self.target
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

    def start(self) -> PredictorProcess:
        self._launch(self.args, self.env, self.log_path)
        return self

    def health(self) -> str:
        from services.client.client import ForecastClient

        try:
            with ForecastClient(self.health_target, timeout=1) as client:
                return client.health()
        except Exception:  # not listening yet
            return "UNREACHABLE"

    def wait_serving(self, timeout: float = 60) -> PredictorProcess:
        from services.client.client import ForecastClient

        with ForecastClient(self.health_target) as probe:
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


class RetrainerProcess(LoggedProcess):
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

    def start(self) -> RetrainerProcess:
        self._launch(self.args, {**os.environ, **QUIET_MLFLOW}, self.log_path)
        self._wait_ready(
            lambda: http_ok(f"{self.url}/healthz"),
            30,
            f"the retraining receiver (log: {self.log_path})",
        )
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
