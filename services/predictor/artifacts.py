"""A registered model version as the predictor holds it: resolved in the registry, cached on
disk (versions are immutable), loaded by onnxruntime and checked."""

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


def resolve(client: MlflowClient, reference: ModelReference) -> ModelIdentity:
    """The registry's answer to a reference: the version it names now, and its run."""
    if reference.version:
        found = client.get_model_version(reference.name, reference.version)
    else:
        found = client.get_model_version_by_alias(reference.name, reference.alias)
    return ModelIdentity(found.name, str(found.version), found.run_id, reference.uri)


def fetch(identity: ModelIdentity, cache_dir: Path) -> Path:
    """The version's model folder, downloaded once: versions are immutable."""
    folder = cache_dir / identity.name / identity.version
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


def load(ticker: str, identity: ModelIdentity, cache_dir: Path) -> ForecastModel:
    """Fetch, load and check one resolved version for ``ticker``."""
    model = ForecastModel(fetch(identity, cache_dir))
    trained_for = model.card.ticker
    if trained_for and trained_for != ticker:
        raise ValueError(f"{identity.uri} was trained for {trained_for}, not {ticker}")
    return model
