"""What a forecast is, and how one is made from a model and prices: no transport, no state."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import pandas as pd

from services.core.calendar import next_trading_day
from services.core.forecaster import ForecastModel
from services.core.prices import PriceValidationError, validate_prices
from services.predictor.artifacts import ModelIdentity
from services.predictor.errors import InvalidInput


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


def forecast_next(
    ticker: str,
    identity: ModelIdentity,
    model: ForecastModel,
    prices: pd.DataFrame,
    synthetic: bool,
) -> Forecast:
    """The forecast for the trading day after the last bar of ``prices``."""
    result = model.forecast_last(prices)
    last_date = result.anchor_dates[0].date()
    return Forecast(
        ticker=ticker,
        last_date=last_date,
        last_close=float(result.last_close[0]),
        target_date=next_trading_day(last_date),
        predicted_close=float(result.median[0]),
        lower=float(result.prices[0, 0]),
        upper=float(result.prices[0, -1]),
        level=model.interval_level,
        model=identity,
        synthetic_data=synthetic,
    )


def history_frame(history: Sequence[Bar], model: ForecastModel, max_bars: int) -> pd.DataFrame:
    """A request's bars as a validated price frame; InvalidInput names the first broken rule."""
    if len(history) > max_bars:
        raise InvalidInput(f"history has {len(history)} bars; at most {max_bars} are accepted")
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
            raise InvalidInput(f"history dates must strictly increase: {later} follows {earlier}")
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
