"""Which registered version each ticker should serve now, or why none: a pinned version, or
the one its alias names (every alias in one search), each version's record in the registry
looked up once and kept (versions are immutable), new ones in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from mlflow import MlflowClient

from services.core.naming import ModelReference
from services.predictor import artifacts
from services.predictor.artifacts import ModelIdentity


class NotServable(Exception):
    """Why a ticker cannot be served now; said to callers as it is."""


class VersionResolver:
    def __init__(self, client: MlflowClient, workers: int = 8):
        self.client = client
        self.workers = workers
        self._identities: dict[tuple[str, str], ModelIdentity] = {}  # (name, version) -> record

    def targets(
        self, references: dict[str, ModelReference]
    ) -> dict[str, ModelIdentity | NotServable]:
        """ticker -> the version it should serve now, or why there is none."""
        aliased = [r for r in references.values() if r.alias]
        versions = {}
        if aliased:
            alias = aliased[0].alias
            versions = artifacts.alias_versions(self.client, [r.name for r in aliased], alias)
        wanted = {
            ticker: (reference, reference.version or versions.get(reference.name))
            for ticker, reference in references.items()
        }
        unknown = {
            (reference.name, version): (reference, version)
            for reference, version in wanted.values()
            if version is not None and (reference.name, version) not in self._identities
        }
        with ThreadPoolExecutor(self.workers, thread_name_prefix="registry") as pool:
            found = dict(zip(unknown, pool.map(self._look_up, unknown.values()), strict=True))
        self._identities |= {k: v for k, v in found.items() if isinstance(v, ModelIdentity)}
        targets = {}
        for ticker, (reference, version) in wanted.items():
            if version is None:
                targets[ticker] = NotServable(
                    f"no version of {reference.name} has the alias {reference.alias!r} yet"
                )
            else:  # a pinned version that does not exist, MLflow away: tried again next time
                key = (reference.name, version)
                targets[ticker] = self._identities.get(key) or found[key]
        return targets

    def _look_up(self, wanted: tuple[ModelReference, str]) -> ModelIdentity | NotServable:
        reference, version = wanted
        try:
            return artifacts.identity(self.client, reference, version)
        except Exception as exc:
            return NotServable(f"cannot look {reference.uri} up: {exc}")
