"""What a forecast is, and how one is made from a model and bars: no transport, no state."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple, Protocol

import numpy as np

from services.core.calendar import next_trading_day
from services.core.forecaster import TickerModel
from services.core.price_rules import Bars, PriceValidationError, trading_days, value_problems
from services.predictor.artifacts import ModelIdentity
from services.predictor.errors import InvalidInput

_ISO_DAYS = re.compile(r"\d{4}-\d\d-\d\d(?:\|\d{4}-\d\d-\d\d)*")
_FIRST_DAY = np.datetime64("0001-01-01")  # numpy has a year 0; the calendar does not
_DASHES, _DIGITS = [4, 7], [0, 1, 2, 3, 5, 6, 8, 9]  # where YYYY-MM-DD has what


class BarLike(Protocol):
    """A daily bar as a request carries it (the proto's Bar), or anything shaped like it."""

    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class History(NamedTuple):
    """A request's bars as columns, before any rule is checked: the dates as sent (text, or
    the 10 bytes of each date when read from the request's wire bytes) and five floats."""

    dates: Sequence[str] | np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def of(cls, bars: Sequence[BarLike]) -> History:
        """Field by field, for any bars."""
        rows = [(b.date, b.open, b.high, b.low, b.close, b.volume) for b in bars]
        dates, *columns = zip(*rows, strict=True) if rows else ((),) * 6
        return cls(dates, *np.array(columns, dtype="float64").reshape(5, -1))


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
    model: TickerModel,
    bars: Bars,
    synthetic: bool,
    widen: float | None = None,
) -> Forecast:
    """The forecast for the trading day after the last of ``bars``, with the interval's
    widening of that day (the calibration's own when ``widen`` is None)."""
    quantiles = model.forecast_next(bars, widen)
    last_date = bars.days[-1].item()
    return Forecast(
        ticker=ticker,
        last_date=last_date,
        last_close=float(bars.close[-1]),
        target_date=next_trading_day(last_date),
        predicted_close=float(quantiles[len(quantiles) // 2]),
        lower=float(quantiles[0]),
        upper=float(quantiles[-1]),
        level=model.interval_level,
        model=identity,
        synthetic_data=synthetic,
    )


def request_bars(history: History, model: TickerModel, max_bars: int) -> Bars:
    """A request's bars, checked by the same rules as every price frame, zero-volume days
    dropped; InvalidInput names what is wrong."""
    if len(history.dates) > max_bars:
        raise InvalidInput(
            f"history has {len(history.dates)} bars; at most {max_bars} are accepted"
        )
    days = _days(history.dates)
    backwards = np.flatnonzero(np.diff(days) <= np.timedelta64(0, "D"))
    if backwards.size:
        later, earlier = days[backwards[0] + 1], days[backwards[0]]
        raise InvalidInput(f"history dates must strictly increase: {later} follows {earlier}")
    h = history
    bars = Bars(days, h.open, h.high, h.low, h.close, h.close, h.volume)  # no Adj Close in a bar
    try:
        problems, _ = value_problems(bars)
        if problems:
            raise PriceValidationError("history", problems)
        bars = trading_days(bars, "history")
    except PriceValidationError as exc:
        raise InvalidInput(str(exc)) from None
    if len(bars) < model.bars_needed:
        raise InvalidInput(
            f"history has {len(bars)} usable bars; the model needs at least {model.bars_needed} "
            f"(a window of {model.window} plus {model.bars_needed - model.window} of warm-up)"
        )
    return bars


def _days(dates: Sequence[str] | np.ndarray) -> np.ndarray:
    """The bars' dates, which must be YYYY-MM-DD; InvalidInput names the first that is not."""
    # The common case in one check of the spelling and one numpy parse (which refuses a 13th
    # month or a 30th of February); anything else takes the slow path, which says which
    # bar is wrong exactly as date.fromisoformat sees it.
    if _spelled_as_days(dates):
        try:
            days = np.array(dates, dtype="datetime64[D]")
            if not len(days) or days.min() >= _FIRST_DAY:
                return days
        except ValueError:
            pass
    texts = [d.decode(errors="replace") if isinstance(d, bytes) else d for d in dates]
    parsed = []
    for number, text in enumerate(texts, start=1):
        try:
            parsed.append(date.fromisoformat(text))
        except ValueError:
            raise InvalidInput(
                f"history bar {number} has date {text!r}; expected YYYY-MM-DD"
            ) from None
    return np.array(parsed, dtype="datetime64[D]")


def _spelled_as_days(dates: Sequence[str] | np.ndarray) -> bool:
    """Every date spelled YYYY-MM-DD in digits."""
    if isinstance(dates, np.ndarray):  # 10 bytes each, from the wire
        spelled = np.frombuffer(dates.tobytes(), dtype=np.uint8).reshape(-1, 10)
        digits = spelled[:, _DIGITS] - ord("0")
        return bool((spelled[:, _DASHES] == ord("-")).all() and (digits < 10).all())
    return bool(_ISO_DAYS.fullmatch("|".join(dates)))
