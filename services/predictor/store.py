"""The predictor's models and their prices, loaded at start and kept fresh in the background.

Each ticker has a ``TickerState``, replaced whole (never mutated) when its prices or its model
change, so a request reads one consistent state without taking a lock. A refresh picks up
newer price snapshots and, for a ticker that follows an alias, the version the alias points
to now: that version is loaded and checked off the request path, the same way as at start,
then swapped in whole. One that fails is logged, counted and not tried again, and the
version before it keeps serving. A pinned version never changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from services.core.forecaster import ForecastModel
from services.core.naming import ModelReference
from services.core.price_rules import Bars
from services.core.scoring import AgainstNaive, against_naive
from services.core.snapshots import Snapshot, SnapshotStore
from services.predictor import artifacts
from services.predictor.artifacts import ModelIdentity
from services.predictor.forecasts import Forecast, forecast_next
from services.predictor.metrics import PredictorMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickerState:
    ticker: str
    identity: ModelIdentity
    model: ForecastModel
    snapshot: Snapshot
    prices: pd.DataFrame
    latest: Forecast  # computed once per snapshot: a forecast from the latest prices is a lookup
    realized: AgainstNaive | None  # on the latest days the model had not been trained on


class ModelStore:
    """Every configured ticker's state: loaded by ``load``, kept fresh by ``refresh``."""

    def __init__(
        self,
        references: dict[str, ModelReference],
        client: MlflowClient,
        snapshots: SnapshotStore,
        cache_dir: Path,
        metrics: PredictorMetrics,
        realized_window: int = 20,
    ):
        self.references = references
        self.client = client
        self.snapshots = snapshots
        self.cache_dir = cache_dir
        self.metrics = metrics
        self.realized_window = realized_window
        self._states: dict[str, TickerState] = {}
        self._refused: set[tuple[str, str]] = set()  # versions that failed their checks
        for ticker in references:  # a series from the start, so "not ready" can be alerted on
            metrics.ready.labels(ticker).set(0)

    @property
    def tickers(self) -> list[str]:
        return list(self.references)

    @property
    def ready(self) -> bool:
        return len(self._states) == len(self.references)

    def state(self, ticker: str) -> TickerState | None:
        return self._states.get(ticker)

    def load(self) -> None:
        """Load every model not loaded yet, with its latest prices; raises on the first failure."""
        for ticker, reference in self.references.items():
            if ticker in self._states:
                continue
            identity = artifacts.resolve(self.client, reference)
            model = artifacts.load(ticker, identity, self.cache_dir / "models")
            snapshot = self.snapshots.latest(ticker)
            if snapshot is None:
                raise LookupError(
                    f"no price snapshot of {ticker} in '{self.snapshots.experiment}': "
                    "run petr4-ingest"
                )
            prices = self.snapshots.load(snapshot, self.cache_dir / "snapshots")
            self.serve(ticker, identity, model, snapshot, prices)
            log.info(
                "serving %s with %s v%s (run %s)",
                ticker,
                identity.name,
                identity.version,
                identity.run_id,
            )

    def refresh(self) -> None:
        """Follow aliases and pick up newer snapshots; a failure keeps what serves and is counted."""
        for ticker in list(self._states):
            if self.references[ticker].alias:
                self._follow_alias(ticker)
            self._refresh_prices(ticker)
            self._update_age(self._states[ticker])

    def serve(
        self,
        ticker: str,
        identity: ModelIdentity,
        model: ForecastModel,
        snapshot: Snapshot,
        prices: pd.DataFrame,
    ) -> None:
        """Serve ``ticker`` with this model and these prices from now on."""
        self._install(self._state(ticker, identity, model, snapshot, prices))

    # -- internals ---------------------------------------------------------------------

    def _follow_alias(self, ticker: str) -> None:
        current = self._states[ticker]
        reference = self.references[ticker]
        try:
            identity = artifacts.resolve(self.client, reference)
        except Exception:
            self.metrics.model_load_errors.labels(ticker).inc()
            log.exception(
                "%s: cannot look %s up; still serving v%s",
                ticker,
                reference.uri,
                current.identity.version,
            )
            return
        key = (identity.name, identity.version)
        if identity.version == current.identity.version or key in self._refused:
            return
        try:
            model = artifacts.load(ticker, identity, self.cache_dir / "models")
            state = self._state(ticker, identity, model, current.snapshot, current.prices)
        except Exception:
            self._refused.add(key)
            self.metrics.model_load_errors.labels(ticker).inc()
            log.exception(
                "%s: %s now points to %s v%s, which failed its checks; still serving v%s",
                ticker,
                reference.uri,
                identity.name,
                identity.version,
                current.identity.version,
            )
            return
        self._install(state)
        log.info(
            "%s: %s moved; now serving %s v%s (run %s), was v%s",
            ticker,
            reference.uri,
            identity.name,
            identity.version,
            identity.run_id,
            current.identity.version,
        )

    def _refresh_prices(self, ticker: str) -> None:
        current = self._states[ticker]
        try:
            snapshot = self.snapshots.latest(ticker)
            if snapshot is None or snapshot.run_id == current.snapshot.run_id:
                return
            prices = self.snapshots.load(snapshot, self.cache_dir / "snapshots")
            self.serve(ticker, current.identity, current.model, snapshot, prices)
            log.info("%s: prices refreshed to %s", ticker, snapshot.last_date)
        except Exception:
            self.metrics.refresh_errors.labels(ticker).inc()
            log.exception(
                "%s: price refresh failed; still serving prices to %s",
                ticker,
                current.snapshot.last_date,
            )

    def _state(
        self,
        ticker: str,
        identity: ModelIdentity,
        model: ForecastModel,
        snapshot: Snapshot,
        prices: pd.DataFrame,
    ) -> TickerState:
        # Forecasting the latest prices also warms onnxruntime up before the first request.
        latest = forecast_next(ticker, identity, model, Bars.from_frame(prices), snapshot.synthetic)
        return TickerState(
            ticker, identity, model, snapshot, prices, latest, self._realized(model, prices)
        )

    def _realized(self, model: ForecastModel, prices: pd.DataFrame) -> AgainstNaive | None:
        """Errors on days after the model's training data, now that their closes are known.

        Those forecasts are out of sample: the model never saw those days. They are what
        the rolling MAE alert compares with the naive forecast.
        """
        trained_through = pd.Timestamp(model.card.data.last_date or prices.index[-1])
        # Days after the training data; the last bar has no next close yet.
        unseen = prices.index[prices.index >= trained_through][:-1]
        if len(unseen) == 0:
            return None
        anchors = unseen[-self.realized_window :]
        start = max(0, prices.index.get_loc(anchors[0]) - model.bars_needed)
        result = model.forecast(prices.iloc[start:], anchors)
        return against_naive(result.median, result.actual, result.last_close)

    def _install(self, state: TickerState) -> None:
        previous = self._states.get(state.ticker)
        self._states[state.ticker] = state
        m, t = self.metrics, state.ticker
        if previous is not None and previous.identity != state.identity:
            m.model_info.remove(
                t, previous.identity.name, previous.identity.version, previous.identity.run_id
            )
        m.model_info.labels(
            t, state.identity.name, state.identity.version, state.identity.run_id
        ).set(1)
        m.ready.labels(t).set(1)
        m.forecast_close.labels(t).set(state.latest.predicted_close)
        m.last_close.labels(t).set(state.latest.last_close)
        m.data_last_date.labels(t).set(
            datetime.combine(state.latest.last_date, datetime.min.time(), UTC).timestamp()
        )
        if state.realized is not None:
            m.realized_error.labels(t).set(state.realized.last_error)
            m.realized_mae.labels(t).set(state.realized.mae)
            m.realized_naive_mae.labels(t).set(state.realized.naive_mae)
            m.realized_days.labels(t).set(state.realized.days)
        self._update_age(state)

    def _update_age(self, state: TickerState) -> None:
        age = (datetime.now(UTC).date() - state.latest.last_date).days
        self.metrics.data_age.labels(state.ticker).set(age)
