from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.naming import PRICES_EXPERIMENT, Ticker
from services.core.prices import OHLC_TOLERANCE
from services.core.tracking import MlflowSettings


class IngestSettings(MlflowSettings):
    """petr4-ingest's settings."""

    model_config = SettingsConfigDict(env_prefix="PETR4_INGEST_")

    tickers: list[Ticker] = Field(
        ["PETR4.SA"], description="B3 tickers to refresh, as Yahoo spells them"
    )
    source: str = Field(
        "yahoo",
        description="'yahoo', 'csv:PATH' ({ticker} in PATH stands for each ticker) or 'synthetic'",
    )
    experiment: str = Field(
        PRICES_EXPERIMENT, description="MLflow experiment holding the snapshots"
    )
    overlap_days: int = Field(
        7,
        ge=0,
        description="calendar days re-downloaded before the last stored date, to check history",
    )
    history_tolerance: float = Field(
        1e-3, ge=0, description="relative difference allowed between stored and downloaded OHLC"
    )
    ohlc_tolerance: float = Field(
        OHLC_TOLERANCE,
        ge=0,
        description="how far High/Low may miss Open/Close before a bar is refused",
    )
    full_refresh: bool = Field(
        False, description="download all history and replace the snapshot (after a split, say)"
    )
    dry_run: bool = Field(False, description="validate without committing anything")
    if_missing: bool = Field(
        False, description="only tickers without any snapshot yet (a first install, say)"
    )
    first_date: date = Field(date(2000, 1, 1), description="first date of a full Yahoo download")
    synthetic_seed: int = Field(42, description="seed of the synthetic series")
    cache_dir: Path = Field(Path(".cache/petr4"), description="writable folder for caches")
    log_level: str = Field("INFO", description="logging level")
    json_logs: bool = Field(False, description="log one JSON object per line")
