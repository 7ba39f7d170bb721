"""The loaded model of one ticker: resolved in the registry, cached on disk, run by onnxruntime."""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from services.core.forecaster import ForecastModel
from services.core.naming import registered_model_name

log = logging.getLogger(__name__)

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
_COMPLETE = ".complete"


@dataclass(frozen=True)
class ModelIdentity:
    """Which registered version serves a ticker."""

    name: str
    version: str
    run_id: str
    uri: str


def model_uri(ticker: str, version: str, alias: str) -> str:
    """``models:/lstm-TICKER/VERSION`` when a version is pinned, else ``…@ALIAS``."""
    name = registered_model_name(ticker)
    return f"models:/{name}/{version}" if version else f"models:/{name}@{alias}"


def resolve(client: MlflowClient, uri: str) -> ModelIdentity:
    """The registry's answer to a models:/ URI: the version number and its run."""
    match = _URI.match(uri)
    if match is None:
        raise ValueError(f"model URI {uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS")
    if match["alias"]:
        found = client.get_model_version_by_alias(match["name"], match["alias"])
    else:
        found = client.get_model_version(match["name"], match["version"])
    return ModelIdentity(found.name, str(found.version), found.run_id, uri)


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


def load(
    client: MlflowClient, ticker: str, uri: str, cache_dir: Path
) -> tuple[ModelIdentity, ForecastModel]:
    """Resolve, fetch, load and check one ticker's model."""
    identity = resolve(client, uri)
    model = ForecastModel(fetch(identity, cache_dir))
    trained_for = model.metadata.get("ticker")
    if trained_for and trained_for != ticker:
        raise ValueError(f"{uri} was trained for {trained_for}, not {ticker}")
    return identity, model
