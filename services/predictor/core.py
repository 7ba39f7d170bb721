"""The predictor's work, free of gRPC: forecasts, model information, price refreshes.

Each ticker has a ``TickerState``, replaced whole (never mutated) when prices or the
model change, so an RPC always reads one consistent state without taking a lock.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from services.core.calendar import next_trading_day
from services.core.forecaster import ForecastModel
from services.core.naming import check_ticker
from services.core.prices import PriceValidationError, validate_prices
from services.core.snapshots import Snapshot, SnapshotStore
from services.predictor import model as model_loading
from services.predictor.errors import InvalidInput, ModelNotFound, ModelNotReady
from services.predictor.metrics import PredictorMetrics
from services.predictor.model import ModelIdentity

log = logging.getLogger(__name__)


class Bar(NamedTuple):
    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class Forecast:
    ticker: str
    last_date: date
    last_close: float
    target_date: date
    predicted_close: float
    lower: float
    upper: float
    level: float
    model: ModelIdentity
    synthetic_data: bool

    @property
    def change_pct(self) -> float:
        return 100.0 * (self.predicted_close / self.last_close - 1.0)


@dataclass(frozen=True)
class RealizedErrors:
    """How the model did on the latest days it had not been trained on."""

    days: int
    last_abs_error: float
    mae: float
    naive_mae: float


@dataclass(frozen=True)
class TickerState:
    ticker: str
    identity: ModelIdentity
    model: ForecastModel
    snapshot: Snapshot
    prices: pd.DataFrame
    latest: Forecast
    realized: RealizedErrors | None


@dataclass(frozen=True)
class ModelDescription:
    ticker: str
    identity: ModelIdentity
    metadata: dict
    window: int
    min_history_bars: int
    quantiles: tuple[float, ...]
    interval_level: float
    prices_last_date: str


class Predictor:
    """Loads every configured model, keeps its prices fresh, and answers forecasts."""

    def __init__(
        self,
        model_uris: dict[str, str],
        client: MlflowClient,
        store: SnapshotStore,
        cache_dir: Path,
        metrics: PredictorMetrics,
        max_history_bars: int = 5000,
        realized_window: int = 20,
    ):
        self.model_uris = model_uris
        self.client = client
        self.store = store
        self.cache_dir = cache_dir
        self.metrics = metrics
        self.max_history_bars = max_history_bars
        self.realized_window = realized_window
        self._states: dict[str, TickerState] = {}
        for ticker in model_uris:  # a series from the start, so "not ready" can be alerted on
            metrics.ready.labels(ticker).set(0)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return len(self._states) == len(self.model_uris)

    def load(self) -> None:
        """Load every model not loaded yet, with its latest prices; raises on the first failure."""
        for ticker, uri in self.model_uris.items():
            if ticker in self._states:
                continue
            identity, model = model_loading.load(
                self.client, ticker, uri, self.cache_dir / "models"
            )
            snapshot, prices = self._latest_prices(ticker)
            self.serve(ticker, identity, model, snapshot, prices)
            log.info(
                "serving %s with %s v%s (run %s)",
                ticker,
                identity.name,
                identity.version,
                identity.run_id,
            )

    def serve(
        self,
        ticker: str,
        identity: ModelIdentity,
        model: ForecastModel,
        snapshot: Snapshot,
        prices: pd.DataFrame,
    ) -> None:
        """Start (or keep) serving ``ticker`` with this model and these prices."""
        # Computed once per snapshot: a forecast from the latest prices is then a lookup.
        # It also warms onnxruntime up before the first request.
        latest = self._forecast(ticker, identity, model, prices, snapshot.synthetic)
        state = TickerState(
            ticker, identity, model, snapshot, prices, latest, self._realized(model, prices)
        )
        self._install(state)

    def refresh(self) -> None:
        """Pick up newer price snapshots; a failure keeps the current prices and is counted."""
        for ticker, state in list(self._states.items()):
            try:
                snapshot = self.store.latest(ticker)
                if snapshot is not None and snapshot.run_id != state.snapshot.run_id:
                    prices = self.store.load(snapshot, self.cache_dir / "snapshots")
                    self.serve(ticker, state.identity, state.model, snapshot, prices)
                    log.info("%s: prices refreshed to %s", ticker, snapshot.last_date)
            except Exception:
                self.metrics.refresh_errors.labels(ticker).inc()
                log.exception(
                    "%s: price refresh failed; still serving prices to %s",
                    ticker,
                    state.snapshot.last_date,
                )
            self._update_age(self._states[ticker])

    # -- requests ----------------------------------------------------------------------

    def forecast(self, ticker: str, history: Sequence[Bar] | None = None) -> Forecast:
        state = self._state_for(ticker)
        if not history:
            return state.latest
        prices = self._history_frame(history, state.model)
        return self._forecast(state.ticker, state.identity, state.model, prices, synthetic=False)

    def describe(self, ticker: str = "") -> list[ModelDescription]:
        states = (
            [self._state_for(ticker)] if ticker else [self._state_for(t) for t in self.model_uris]
        )
        return [
            ModelDescription(
                ticker=s.ticker,
                identity=s.identity,
                metadata=s.model.metadata,
                window=s.model.window,
                min_history_bars=s.model.bars_needed,
                quantiles=s.model.quantiles,
                interval_level=s.model.interval_level,
                prices_last_date=s.snapshot.last_date,
            )
            for s in states
        ]

    # -- internals ---------------------------------------------------------------------

    def _state_for(self, ticker: str) -> TickerState:
        if not ticker:
            raise InvalidInput("ticker is required, such as PETR4.SA")
        try:
            check_ticker(ticker)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if ticker not in self.model_uris:
            served = ", ".join(sorted(self.model_uris))
            raise ModelNotFound(f"no model serves ticker {ticker!r}; this server serves {served}")
        state = self._states.get(ticker)
        if state is None:
            raise ModelNotReady(f"the model for {ticker} is still loading")
        return state

    def _latest_prices(self, ticker: str) -> tuple[Snapshot, pd.DataFrame]:
        snapshot = self.store.latest(ticker)
        if snapshot is None:
            raise LookupError(
                f"no price snapshot of {ticker} in '{self.store.experiment}': run petr4-ingest"
            )
        return snapshot, self.store.load(snapshot, self.cache_dir / "snapshots")

    def _history_frame(self, history: Sequence[Bar], model: ForecastModel) -> pd.DataFrame:
        if len(history) > self.max_history_bars:
            raise InvalidInput(
                f"history has {len(history)} bars; at most {self.max_history_bars} are accepted"
            )
        days = []
        for number, bar in enumerate(history, start=1):
            try:
                days.append(date.fromisoformat(bar.date))
            except ValueError:
                raise InvalidInput(
                    f"history bar {number} has date {bar.date!r}; expected YYYY-MM-DD"
                ) from None
        for earlier, later in itertools.pairwise(days):
            if later <= earlier:
                raise InvalidInput(
                    f"history dates must strictly increase: {later} follows {earlier}"
                )
        frame = pd.DataFrame(
            {
                "Open": [b.open for b in history],
                "High": [b.high for b in history],
                "Low": [b.low for b in history],
                "Close": [b.close for b in history],
                "Adj Close": [b.close for b in history],
                "Volume": [b.volume for b in history],
            },
            index=pd.DatetimeIndex(days, name="Date"),
        )
        try:
            frame, _ = validate_prices(frame, "history")
        except PriceValidationError as exc:
            raise InvalidInput(str(exc)) from None
        if len(frame) < model.bars_needed:
            raise InvalidInput(
                f"history has {len(frame)} usable bars; the model needs at least {model.bars_needed} "
                f"(a window of {model.window} plus {model.bars_needed - model.window} of warm-up)"
            )
        return frame

    def _forecast(
        self,
        ticker: str,
        identity: ModelIdentity,
        model: ForecastModel,
        prices: pd.DataFrame,
        synthetic: bool,
    ) -> Forecast:
        result = model.forecast_last(prices)
        lower, median, upper = result.prices[0, 0], result.median[0], result.prices[0, -1]
        last_date = result.anchor_dates[0].date()
        return Forecast(
            ticker=ticker,
            last_date=last_date,
            last_close=float(result.last_close[0]),
            target_date=next_trading_day(last_date),
            predicted_close=float(median),
            lower=float(lower),
            upper=float(upper),
            level=model.interval_level,
            model=identity,
            synthetic_data=synthetic,
        )

    def _realized(self, model: ForecastModel, prices: pd.DataFrame) -> RealizedErrors | None:
        """Errors on days after the model's training data, now that their closes are known.

        Those forecasts are out of sample: the model never saw those days. They are what
        the rolling MAE alert compares with the naive forecast.
        """
        trained_through = pd.Timestamp(
            model.metadata.get("data", {}).get("last_date", prices.index[-1])
        )
        unseen = prices.index[(prices.index >= trained_through)][
            :-1
        ]  # the last bar has no next close
        if len(unseen) == 0:
            return None
        anchors = unseen[-self.realized_window :]
        start = max(0, prices.index.get_loc(anchors[0]) - model.bars_needed)
        result = model.forecast(prices.iloc[start:], anchors)
        errors = np.abs(result.median - result.actual)
        naive = np.abs(result.last_close - result.actual)
        return RealizedErrors(
            len(errors), float(errors[-1]), float(errors.mean()), float(naive.mean())
        )

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
            m.realized_error.labels(t).set(state.realized.last_abs_error)
            m.realized_mae.labels(t).set(state.realized.mae)
            m.realized_naive_mae.labels(t).set(state.realized.naive_mae)
            m.realized_days.labels(t).set(state.realized.days)
        self._update_age(state)

    def _update_age(self, state: TickerState) -> None:
        age = (datetime.now(UTC).date() - state.latest.last_date).days
        self.metrics.data_age.labels(state.ticker).set(age)
