from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parents[2]


class DevSettings(BaseSettings):
    """Where the development harness finds what lives beside the project."""

    model_config = SettingsConfigDict(env_prefix="PETR4_DEV_")

    shared_dir: Path = Field(
        REPO.parent / "shared",
        description="real daily prices (data/) and the CRD and skaffold schemas (schemas/)",
    )
