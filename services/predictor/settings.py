from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.naming import CHAMPION_ALIAS, PRICES_EXPERIMENT, Ticker
from services.core.tracking import MlflowSettings


class ServeSettings(MlflowSettings):
    """petr4-serve's settings."""

    model_config = SettingsConfigDict(env_prefix="PETR4_SERVE_")

    tickers: list[Ticker] = Field(
        ["PETR4.SA"], description="tickers to serve, each from its own registered model"
    )
    model_version: str = Field(
        "", description="pin this registered version for every ticker (empty: use model-alias)"
    )
    model_alias: str = Field(
        CHAMPION_ALIAS, description="registry alias served when no version is pinned"
    )
    prices_experiment: str = Field(
        PRICES_EXPERIMENT, description="MLflow experiment of the price snapshots"
    )
    host: str = Field("[::]", description="address the gRPC and metrics ports bind to")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port")
    metrics_port: int = Field(9100, ge=0, le=65535, description="Prometheus /metrics port")
    health_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="also serve grpc.health.v1, and only it, in plaintext on this port: for "
        "the kubelet's probes, which speak neither TLS nor tokens",
    )
    tls_cert_file: Path | None = Field(
        None, description="serve gRPC over TLS with this PEM certificate (chain); re-read on change"
    )
    tls_key_file: Path | None = Field(None, description="the PEM private key of --tls-cert-file")
    tls_client_ca_file: Path | None = Field(
        None, description="require client certificates signed by this PEM CA (mutual TLS)"
    )
    token_file: Path | None = Field(
        None,
        description="require 'authorization: Bearer <token>' with one of this file's tokens, one "
        "a line; re-read on change (health is exempt)",
    )
    workers: int = Field(8, ge=1, description="threads handling RPCs")
    refresh_seconds: float = Field(
        60.0,
        gt=0,
        description="how often to look for newer snapshots, moved aliases, and tickers not "
        "served yet",
    )
    load_workers: int = Field(8, ge=1, description="tickers and model folders loaded at once")
    max_history_bars: int = Field(
        5000, ge=1, description="largest explicit history accepted in a request"
    )
    max_connection_age_seconds: float = Field(
        300.0,
        ge=0,
        description="close a client's connection after this long (0: never), so long-lived "
        "clients reach pods added since they connected; calls in flight get --shutdown-grace-seconds",
    )
    max_message_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="largest gRPC message, both ways"
    )
    realized_window: int = Field(
        60,
        ge=1,
        description="out-of-sample trading days the live scores cover: realized MAE and naive's, "
        "the interval's coverage and score, the classic interval's score",
    )
    startup_timeout_seconds: float = Field(
        300.0, gt=0, description="give up, exit non-zero, if models cannot be loaded by then"
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, description="time accepted RPCs get to finish after SIGTERM"
    )
    cache_dir: Path = Field(
        Path(".cache/petr4/serve"), description="writable folder for models and prices"
    )
    log_level: str = Field("INFO", description="logging level")
    json_logs: bool = Field(False, description="log one JSON object per line")

    @model_validator(mode="after")
    def _tls_files_go_together(self) -> ServeSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("--tls-cert-file and --tls-key-file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "--tls-client-ca-file (mutual TLS) needs --tls-cert-file and --tls-key-file"
            )
        for path in (
            self.tls_cert_file,
            self.tls_key_file,
            self.tls_client_ca_file,
            self.token_file,
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a file")
        return self
