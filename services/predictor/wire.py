"""A Forecast request's bars read straight from its wire bytes.

Reading six fields from each parsed Bar costs more than the forecast itself, one Python
object at a time. Serialized, a Bar with all six fields set, in field order and with a
10-byte date, is 59 bytes whose tags never change, so numpy reads the history of any
length in one go. A request laid out any other way (a field left at zero, which proto3
leaves out; another order; another date length) is read field by field instead: the same
answer, later.
"""

from __future__ import annotations

import numpy as np

from services.api import forecast_pb2
from services.predictor.forecasts import History

_BAR = np.dtype(
    [
        ("tag", "u1"),  # field 2 of ForecastRequest, length-delimited: 0x12
        ("size", "u1"),  # the Bar's 57 bytes
        ("date_tag", "u1"),
        ("date_size", "u1"),
        ("date", "S10"),
        ("open_tag", "u1"),
        ("open", "<f8"),
        ("high_tag", "u1"),
        ("high", "<f8"),
        ("low_tag", "u1"),
        ("low", "<f8"),
        ("close_tag", "u1"),
        ("close", "<f8"),
        ("volume_tag", "u1"),
        ("volume", "<f8"),
    ]
)
# Where each tag sits in a Bar's bytes, and what it must be: (field number << 3) | wire type.
_TAG_OFFSETS = [_BAR.fields[name][1] for name in _BAR.names if name.endswith(("tag", "size"))]
_TAG_VALUES = np.array([0x12, _BAR.itemsize - 2, 0x0A, 10, 0x11, 0x19, 0x21, 0x29, 0x31], np.uint8)


def history_of(request: forecast_pb2.ForecastRequest) -> History:
    """The request's bars as columns, from its bytes when they are laid out as clients lay
    them out, else field by field."""
    return _decoded(request) or History.of(request.history)


def _decoded(request: forecast_pb2.ForecastRequest) -> History | None:
    data = request.SerializeToString()
    # The ticker (field 1, short) comes first; the bars follow, and nothing else.
    start = 2 + data[1] if data[:1] == b"\x0a" and data[1] < 0x80 else 0
    if (len(data) - start) % _BAR.itemsize or len(data) == start:
        return None
    raw = np.frombuffer(data, dtype=np.uint8, offset=start).reshape(-1, _BAR.itemsize)
    if not (raw[:, _TAG_OFFSETS] == _TAG_VALUES).all():
        return None
    bars = raw.view(_BAR)[:, 0]
    # Contiguous copies: every rule and feature then runs on aligned arrays.
    numbers = [
        np.ascontiguousarray(bars[name]) for name in ("open", "high", "low", "close", "volume")
    ]
    return History(bars["date"], *numbers)
