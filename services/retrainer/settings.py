from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.naming import Ticker


class RetrainSettings(BaseSettings):
    """petr4-retrain's settings."""

    model_config = SettingsConfigDict(env_prefix="PETR4_RETRAIN_")

    tickers: list[Ticker] = Field(
        ["PETR4.SA"], description="tickers whose alerts may start a training"
    )
    alert_names: list[str] = Field(
        ["Petr4RealizedMAEHigh", "Petr4IntervalCoverageOff", "Petr4IntervalWorseThanClassic"],
        description="the alerts that ask for a training (the chart's PrometheusRule defines them)",
    )
    namespace: str = Field("default", description="namespace of the training Jobs")
    template_configmap: str = Field(
        "petr4-retrain-jobs", description="ConfigMap holding one Job manifest per ticker"
    )
    job_selector: str = Field(
        "app.kubernetes.io/component=train",
        description="label selector of every training Job, whatever started it",
    )
    cooldown_seconds: float = Field(
        86400.0, ge=0, description="no new training of a ticker sooner after the last one"
    )
    token_file: Path = Field(
        Path("/var/run/secrets/petr4/token"), description="file holding the shared bearer token"
    )
    kubeconfig: Path | None = Field(
        None, description="kubeconfig to reach the API with (default: the pod's own account)"
    )
    host: str = Field("0.0.0.0", description="address the webhook and metrics ports bind to")
    port: int = Field(8080, ge=0, le=65535, description="webhook port (POST /alerts)")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus /metrics port")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest webhook body accepted")
    log_level: str = Field("INFO", description="logging level")
    json_logs: bool = Field(False, description="log one JSON object per line")
