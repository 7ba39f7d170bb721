"""Registered model versions as the predictor finds them: resolved in the registry, fetched
into a disk cache (versions are immutable), loaded by onnxruntime and checked.

A pooled run registers one version per ticker, all of the same run's model folder, so a
folder is cached and loaded once per run, however many tickers' versions name it.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from services.core.forecaster import ForecastModel
from services.core.naming import ModelReference

log = logging.getLogger(__name__)

_COMPLETE = ".complete"


@dataclass(frozen=True)
class ModelIdentity:
    """Which registered version serves a ticker, and the reference it was resolved from."""

    name: str
    version: str
    run_id: str
    uri: str

    @property
    def artifact_key(self) -> str:
        """What the version's files are: its run's model folder, shared by a pooled run's
        versions."""
        return self.run_id or f"{self.name}-{self.version}"


def identity(client: MlflowClient, reference: ModelReference, version: str) -> ModelIdentity:
    """The registry's record of ``version`` of the reference's model."""
    found = client.get_model_version(reference.name, version)
    return ModelIdentity(found.name, str(found.version), found.run_id, reference.uri)


def alias_versions(client: MlflowClient, names: list[str], alias: str) -> dict[str, str]:
    """The version ``alias`` names in each of the registered models ``names`` that has it:
    one search per hundred models, whatever the number of tickers."""
    found: dict[str, str] = {}
    for start in range(0, len(names), 100):
        quoted = ", ".join(f"'{n}'" for n in names[start : start + 100])
        for model in client.search_registered_models(f"name IN ({quoted})", max_results=100):
            if alias in model.aliases:
                found[model.name] = str(model.aliases[alias])
    return found


def fetch(identity: ModelIdentity, cache_dir: Path) -> Path:
    """The version's model folder, downloaded once: versions are immutable."""
    folder = cache_dir / identity.artifact_key
    if (folder / _COMPLETE).is_file():
        log.info("model %s v%s found in the cache", identity.name, identity.version)
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # a partial download from a crash
    folder.mkdir(parents=True)
    mlflow.artifacts.download_artifacts(
        f"models:/{identity.name}/{identity.version}", dst_path=str(folder)
    )
    (folder / _COMPLETE).touch()
    return folder


def load(identity: ModelIdentity, cache_dir: Path) -> ForecastModel:
    """Fetch, load and check the folder of one resolved version."""
    return ForecastModel(fetch(identity, cache_dir))
