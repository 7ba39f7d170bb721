"""The predictor's request path, free of gRPC: forecasts and model descriptions.

It reads the model store's current states and never changes them; checking a request and
computing its answer is all it does.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.forecaster import TickerModel
from services.core.naming import check_ticker
from services.predictor.artifacts import ModelIdentity
from services.predictor.errors import InvalidInput, ModelNotFound, ModelNotReady
from services.predictor.forecasts import Forecast, History, forecast_next, request_bars
from services.predictor.store import ModelStore, TickerState


@dataclass(frozen=True)
class ModelDescription:
    """A served ticker's model, or (``model`` None) why a configured ticker is not served."""

    ticker: str
    uri: str
    identity: ModelIdentity | None = None
    model: TickerModel | None = None
    prices_last_date: str = ""
    not_ready_reason: str = ""


class Predictor:
    """Answers forecasts and model descriptions from the store's states."""

    def __init__(self, store: ModelStore, max_history_bars: int = 5000):
        self.store = store
        self.max_history_bars = max_history_bars

    def forecast(self, ticker: str, history: History | None = None) -> Forecast:
        state = self._state_for(ticker)
        if not history:
            return state.latest
        bars = request_bars(history, state.model, self.max_history_bars)
        widen = state.widen_for(bars)
        return forecast_next(state.ticker, state.identity, state.model, bars, False, widen)

    def describe(self, ticker: str = "") -> list[ModelDescription]:
        """One ticker's model, or every configured ticker's, served or not."""
        if ticker:
            return [self._description(self._state_for(ticker))]
        described = []
        for t in self.store.tickers:
            state = self.store.state(t)
            if state is None:
                uri = self.store.references[t].uri
                described.append(ModelDescription(t, uri, not_ready_reason=self.store.problem(t)))
            else:
                described.append(self._description(state))
        return described

    def _description(self, state: TickerState) -> ModelDescription:
        return ModelDescription(
            state.ticker,
            state.identity.uri,
            state.identity,
            state.model,
            state.snapshot.last_date,
        )

    def _state_for(self, ticker: str) -> TickerState:
        if not ticker:
            raise InvalidInput("ticker is required, such as PETR4.SA")
        try:
            check_ticker(ticker)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if ticker not in self.store.references:
            served = ", ".join(sorted(self.store.references))
            raise ModelNotFound(f"no model serves ticker {ticker!r}; this server serves {served}")
        state = self.store.state(ticker)
        if state is None:
            raise ModelNotReady(f"{ticker} is not served yet: {self.store.problem(ticker)}")
        return state
