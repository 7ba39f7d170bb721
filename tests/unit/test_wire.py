"""A request's bars read from its wire bytes are the bars read field by field."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from services.api import forecast_pb2
from services.predictor.forecasts import History
from services.predictor.wire import _decoded, history_of

pytestmark = pytest.mark.unit


def request(ticker="PETR4.SA", bars=3, **changes) -> forecast_pb2.ForecastRequest:
    made = forecast_pb2.ForecastRequest(
        ticker=ticker,
        history=[
            forecast_pb2.Bar(
                date=(date(2024, 1, 2) + timedelta(days=day)).isoformat(),
                open=10.0 + day,
                high=11.5 + day,
                low=9.5 + day,
                close=10.5 + day,
                volume=1e6 * (day + 1),
            )
            for day in range(bars)
        ],
    )
    for field, value in changes.items():
        setattr(made.history[1], field, value)
    return made


def same(a: History, b: History) -> bool:
    return list(map(str, np.asarray(a.dates).astype(str))) == list(map(str, b.dates)) and all(
        np.array_equal(x, y, equal_nan=True) for x, y in zip(a[1:], b[1:], strict=True)
    )


@pytest.mark.parametrize(
    "made",
    [
        request(),
        request(bars=1000),
        request(ticker=""),
        request(close=float("nan")),
        request(open=-1.0),
    ],
    ids=["3 bars", "1,000 bars", "no ticker", "a NaN", "a negative open"],
)
def test_regular_requests_are_read_from_their_bytes(made):
    decoded = _decoded(made)
    assert decoded is not None and isinstance(decoded.dates, np.ndarray)
    assert same(decoded, History.of(made.history))


@pytest.mark.parametrize(
    "made",
    [request(volume=0.0), request(date="2024-1-3"), request(ticker="X" * 200)],
    ids=["a zero left out by proto3", "a short date", "a ticker longer than a byte's length"],
)
def test_other_layouts_are_read_field_by_field(made):
    assert _decoded(made) is None
    assert same(history_of(made), History.of(made.history))
