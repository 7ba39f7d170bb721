"""Registered model versions as the predictor finds them: resolved in the registry, fetched
into a disk cache (versions are immutable), loaded by onnxruntime and checked.

A pooled run registers one version per ticker, all of the same run's model folder, so a
folder is cached and loaded once, however many tickers' versions name it: the cache is keyed
by where the registry says a version's files are, never by its run alone (two versions of
one run may name different folders).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
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
    source: str = ""  # where the registry says the version's files are

    @property
    def artifact_key(self) -> str:
        """What the version's files are: its source (a pooled run's versions share it), as a
        name a cache folder can have."""
        if not self.source:
            return f"{self.name}-{self.version}"
        return hashlib.sha256(self.source.encode()).hexdigest()[:24]


def identity(client: MlflowClient, reference: ModelReference, version: str) -> ModelIdentity:
    """The registry's record of ``version`` of the reference's model."""
    found = client.get_model_version(reference.name, version)
    return ModelIdentity(
        found.name, str(found.version), found.run_id, reference.uri, found.source or ""
    )


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
    cache_dir.mkdir(parents=True, exist_ok=True)
    # From the source the registry gave: a models:/ URI would ask the registry for it again,
    # two more requests for each of dozens of tickers at every start. Staged in the cache
    # (one file system), then renamed into place.
    source = identity.source or f"models:/{identity.name}/{identity.version}"
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging))
        Path(local).rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (folder / _COMPLETE).touch()
    return folder


def load(identity: ModelIdentity, cache_dir: Path) -> ForecastModel:
    """Fetch, load and check the folder of one resolved version."""
    return ForecastModel(fetch(identity, cache_dir))
