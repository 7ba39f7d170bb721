"""The predictor's models and their prices, loaded at start and kept fresh in the background.

Each ticker has a ``TickerState``, replaced whole (never mutated) when its prices or its model
change, so a request reads one consistent state without taking a lock. Tickers are
independent: one that cannot load (no champion yet, no prices, a version that fails its
checks) is reported with its reason and tried again at every refresh, while the others
serve. A pass over the tickers asks MLflow a constant number of questions (every ticker's
latest snapshot at once, every alias at once) and then fetches only what changed, in
parallel; a model folder shared by several tickers (a pooled run's) is loaded once.

A ticker that follows an alias moves to the version the alias names now: that version is
loaded and checked off the request path, the same way as at start, then swapped in whole.
One that fails is logged, counted and not tried again, and the version before it keeps
serving. A pinned version never changes.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from services.core.forecaster import ArtifactError, ForecastModel, TickerModel
from services.core.naming import ModelReference
from services.core.price_rules import Bars
from services.core.scoring import RealizedRecord
from services.core.snapshots import Snapshot, SnapshotStore
from services.predictor import artifacts
from services.predictor.artifacts import ModelIdentity
from services.predictor.forecasts import Forecast, forecast_next
from services.predictor.metrics import PredictorMetrics
from services.predictor.realized import realized
from services.predictor.versions import NotServable, VersionResolver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickerState:
    ticker: str
    identity: ModelIdentity
    model: TickerModel
    snapshot: Snapshot
    prices: pd.DataFrame
    latest: Forecast  # computed once per snapshot: a forecast from the latest prices is a lookup
    realized: RealizedRecord | None  # on the latest days the model had not been trained on
    widening: pd.Series  # the interval's adaptive widening by day, replayed from the prices

    def widen_on(self, day) -> float:
        """The widening of a forecast made on ``day`` from the snapshot's prices."""
        return self.model.widen_on(self.widening, day)

    def widen_for(self, bars: Bars) -> float:
        """The widening of a forecast from a request's bars, which may run past the snapshot."""
        return self.model.widen_for(self.widening, bars)


class ModelStore:
    """Every configured ticker's state, loaded and kept fresh by ``load`` and ``refresh``."""

    def __init__(
        self,
        references: dict[str, ModelReference],
        client: MlflowClient,
        snapshots: SnapshotStore,
        cache_dir: Path,
        metrics: PredictorMetrics,
        realized_window: int = 60,
        workers: int = 8,
    ):
        self.references = references
        self.client = client
        self.snapshots = snapshots
        self.cache_dir = cache_dir
        self.metrics = metrics
        self.realized_window = realized_window
        self.workers = workers
        self._states: dict[str, TickerState] = {}
        self._problems: dict[str, str] = dict.fromkeys(references, "still loading")
        self.versions = VersionResolver(client, workers)
        self._models: dict[str, ForecastModel] = {}  # by artifact key: one per distinct folder
        # Model folders that failed their checks (by artifact key), and folders that do not
        # hold a ticker (by artifact key and ticker): never tried again.
        self._refused: dict[str | tuple[str, str], str] = {}
        self._told: set[tuple[str, str]] = set()  # (ticker, artifact key) refusals reported
        for ticker in references:  # a series from the start, so "not ready" can be alerted on
            metrics.ready.labels(ticker).set(0)

    @property
    def tickers(self) -> list[str]:
        return list(self.references)

    @property
    def serving(self) -> list[str]:
        return [t for t in self.references if t in self._states]

    def state(self, ticker: str) -> TickerState | None:
        return self._states.get(ticker)

    def problem(self, ticker: str) -> str:
        """Why ``ticker`` is not served; empty when it is (even if its refresh failed)."""
        return "" if ticker in self._states else self._problems.get(ticker, "")

    def load(self) -> None:
        """One pass over every ticker: what changed or could not load before is (re)loaded,
        in parallel, each distinct model folder once. Raises only when MLflow cannot be
        asked at all."""
        snapshots = self.snapshots.latest_of(self.tickers)
        targets = self.versions.targets(self.references)
        needed = {
            t.artifact_key: t
            for t in targets.values()
            if isinstance(t, ModelIdentity)
            and t.artifact_key not in self._models
            and t.artifact_key not in self._refused
        }
        with ThreadPoolExecutor(self.workers, thread_name_prefix="load") as pool:
            loaded = zip(needed, pool.map(self._load_model, needed.values()), strict=True)
            failed = {key: why for key, why in loaded if why}
            outcomes = pool.map(
                lambda t: self._update(t, targets[t], snapshots.get(t), failed),
                self.tickers,
            )
            for ticker, outcome in zip(self.tickers, outcomes, strict=True):
                if outcome:
                    log.info("%s: %s", ticker, outcome)
        in_use = {s.identity.artifact_key for s in self._states.values()}
        self._models = {k: m for k, m in self._models.items() if k in in_use}
        self.metrics.loaded_models.set(len(self._models))
        for state in self._states.values():
            self.metrics.data_age_of(state)

    def _load_model(self, target: ModelIdentity) -> str:
        """Fetch and load one model folder; why not if it fails, else an empty string."""
        try:
            self._models[target.artifact_key] = artifacts.load(target, self.cache_dir / "models")
            return ""
        except ArtifactError as exc:  # its files are wrong: never tried again
            self._refused[target.artifact_key] = (
                f"{target.uri} (v{target.version}) failed its checks: {exc}"
            )
            return self._refused[target.artifact_key]
        except Exception as exc:  # MLflow away, say: tried again at the next refresh
            return (
                f"{target.uri} (v{target.version}) could not be fetched: "
                f"{type(exc).__name__}: {exc}"
            )

    refresh = load  # a refresh is the same pass, run every refresh interval

    def serve(
        self,
        ticker: str,
        identity: ModelIdentity,
        model: TickerModel,
        snapshot: Snapshot,
        prices: pd.DataFrame,
    ) -> None:
        """Serve ``ticker`` with this model and these prices from now on."""
        self._install(self._state(ticker, identity, model, snapshot, prices))

    # -- internals ---------------------------------------------------------------------

    def _update(
        self,
        ticker: str,
        target: ModelIdentity | NotServable,
        snapshot: Snapshot | None,
        load_failures: dict[str, str],
    ) -> str:
        """Bring one ticker to its target version and latest prices; what happened, if anything."""
        current = self._states.get(ticker)
        try:
            if isinstance(target, NotServable):
                raise target
            if snapshot is None:
                raise NotServable(
                    f"no price snapshot of {ticker} in '{self.snapshots.experiment}': "
                    "run petr4-ingest"
                )
            if current and current.identity == target and current.snapshot == snapshot:
                return ""
            key = target.artifact_key
            if key in load_failures:  # not fetched this time: tried again at the next pass
                raise NotServable(load_failures[key])
            if key in self._models and (key, ticker) not in self._refused:
                try:
                    model = self._models[key].for_ticker(ticker)
                except ArtifactError as exc:
                    self._refused[(key, ticker)] = f"{target.uri} (v{target.version}): {exc}"
            refused = self._refused.get(key) or self._refused.get((key, ticker))
            if refused:
                if (ticker, key) in self._told:
                    return ""  # said and counted once; what served before goes on serving
                self._told.add((ticker, key))
                raise NotServable(refused)
            prices = (
                current.prices
                if current and current.snapshot == snapshot
                else self.snapshots.load(snapshot, self.cache_dir / "snapshots")
            )
            self.serve(ticker, target, model, snapshot, prices)
        except Exception as exc:
            return self._failed(ticker, current, target, exc)
        if current is None:
            return f"serving {target.name} v{target.version} (run {target.run_id})"
        if current.identity != target:
            return (
                f"{target.uri} moved; now serving {target.name} v{target.version} "
                f"(run {target.run_id}), was v{current.identity.version}"
            )
        return f"prices refreshed to {snapshot.last_date}"

    def _failed(self, ticker: str, current: TickerState | None, target, exc: Exception) -> str:
        """Count and say why; a ticker that served keeps serving what it had."""
        reason = str(exc) if isinstance(exc, NotServable) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, NotServable):
            log.warning("%s: loading failed", ticker, exc_info=exc)
        if current is None:  # not served: ``petr4_model_ready`` 0 and the reason say it
            self._problems[ticker] = reason
            return f"not served: {reason}"
        if isinstance(target, NotServable) or current.identity != target:
            self.metrics.model_load_errors.labels(ticker).inc()  # the alias, or its new version
        else:
            self.metrics.refresh_errors.labels(ticker).inc()  # the prices
        return (
            f"still serving v{current.identity.version} with prices to "
            f"{current.snapshot.last_date}: {reason}"
        )

    def _state(
        self,
        ticker: str,
        identity: ModelIdentity,
        model: TickerModel,
        snapshot: Snapshot,
        prices: pd.DataFrame,
    ) -> TickerState:
        widening = model.widening_path(prices)
        bars = Bars.from_frame(prices)
        widen = model.widen_on(widening, prices.index[-1])
        # Forecasting the latest prices also warms onnxruntime up before the first request.
        latest = forecast_next(ticker, identity, model, bars, snapshot.synthetic, widen)
        scored = realized(model, prices, self.realized_window)
        return TickerState(ticker, identity, model, snapshot, prices, latest, scored, widening)

    def _install(self, state: TickerState) -> None:
        previous = self._states.get(state.ticker)
        self._states[state.ticker] = state
        self._problems.pop(state.ticker, None)
        self.metrics.served(state, previous)
