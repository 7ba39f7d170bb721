"""The daily price frame: its schema, how it is read, and the rules it must pass.

A price frame is indexed by trading date (``Date``, tz-naive, midnight) and holds the
columns Yahoo gives with ``auto_adjust=False``. ``Close`` is the quoted close and the
model's target; ``Adj Close`` is also dividend-adjusted and is kept for reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from services.core.price_rules import (
    OHLC_TOLERANCE,
    SHOWN_DATES,
    Bars,
    PriceValidationError,
    order_problems,
    trading_days,
    value_problems,
)

PRICE_COLUMNS: tuple[str, ...] = ("Open", "High", "Low", "Close", "Adj Close", "Volume")
OHLC: tuple[str, ...] = ("Open", "High", "Low", "Close")
BAR_COLUMNS: tuple[str, ...] = (*OHLC, "Volume")  # what a request's bar carries
BIG_MOVE = 0.30  # daily moves beyond this are reported, never changed


@dataclass
class ValidationReport:
    rows: int
    dropped_zero_volume: int = 0
    big_moves: list[tuple[str, float]] = field(default_factory=list)
    ohlc_slips: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.rows} rows"]
        if self.dropped_zero_volume:
            parts.append(f"{self.dropped_zero_volume} zero-volume rows dropped")
        if self.big_moves:
            moves = ", ".join(f"{day} {move:+.0%}" for day, move in self.big_moves[:SHOWN_DATES])
            more = len(self.big_moves) - SHOWN_DATES
            parts.append(
                f"moves over {BIG_MOVE:.0%}: {moves}" + (f" (+{more} more)" if more > 0 else "")
            )
        if self.ohlc_slips:
            shown = ", ".join(self.ohlc_slips[:SHOWN_DATES])
            more = len(self.ohlc_slips) - SHOWN_DATES
            parts.append(
                f"{len(self.ohlc_slips)} bars with High/Low slightly inside Open/Close: {shown}"
                + (f" (+{more} more)" if more > 0 else "")
            )
        return ", ".join(parts)


def validate_prices(
    frame: pd.DataFrame, subject: str = "prices", ohlc_tolerance: float = OHLC_TOLERANCE
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check every rule, drop zero-volume rows, and return the clean frame with a report.

    Raises ``PriceValidationError`` listing every broken rule with the offending dates.
    """
    if frame is None or len(frame) == 0:
        raise PriceValidationError(subject, ["the frame is empty (no rows)"])
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        hint = ""
        if missing == ["Adj Close"]:
            hint = " (Yahoo drops it with auto_adjust=True: download with auto_adjust=False)"
        raise PriceValidationError(
            subject, [f"missing columns {missing}; expected {list(PRICE_COLUMNS)}{hint}"]
        )
    non_numeric = [c for c in PRICE_COLUMNS if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise PriceValidationError(subject, [f"non-numeric columns {non_numeric}"])
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise PriceValidationError(subject, ["the index is not a DatetimeIndex of trading dates"])

    frame = frame.loc[:, list(PRICE_COLUMNS)].astype("float64")
    bars = Bars.from_frame(frame)
    problems = ["dates carry a time zone; expected naive trading dates"] if frame.index.tz else []
    problems += order_problems(bars.days)
    broken, slips = value_problems(bars, ohlc_tolerance)
    if problems + broken:
        raise PriceValidationError(subject, problems + broken)

    traded = bars.volume > 0
    trading_days(bars, subject)  # refuses a frame with no trading day left
    clean = frame.loc[traded]
    report = ValidationReport(
        rows=len(clean),
        dropped_zero_volume=int((~traded).sum()),
        ohlc_slips=list(np.datetime_as_string(bars.days[slips & traded], unit="D")),
    )
    moves = clean["Close"].pct_change()
    for day, move in moves[moves.abs() > BIG_MOVE].items():
        report.big_moves.append((day.strftime("%Y-%m-%d"), float(move)))
    return clean, report


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Bring a frame from any source to the schema's shape: a naive ``Date`` index, flat columns."""
    if isinstance(frame.columns, pd.MultiIndex):  # yfinance: (field, ticker) columns
        frame = frame.copy()
        frame.columns = frame.columns.get_level_values(0)
    if "Date" in frame.columns:
        frame = frame.set_index("Date")
    index = pd.to_datetime(frame.index)
    if index.tz is not None:
        index = index.tz_localize(None)
    frame = frame.copy()
    frame.index = index.normalize().rename("Date")
    frame.columns.name = None
    return frame


class PriceFileError(ValueError):
    """A price file cannot be read as daily bars; the message names the file and why."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"price file {path}: {problem}")


def read_price_csv(path: str | Path, required: tuple[str, ...] = PRICE_COLUMNS) -> pd.DataFrame:
    """Read a Yahoo-format CSV: the classic one-row header or yfinance's multi-row header.

    yfinance's ``to_csv`` writes three header rows (``Price``, ``Ticker``, ``Date``); the
    classic download has one (``Date,Open,...``). Both become the same frame. Anything that
    is not such a file raises ``PriceFileError`` saying what is wrong, in one line.
    """
    path = Path(path)
    if not path.exists():
        raise PriceFileError(path, "no such file")
    if not path.is_file():
        raise PriceFileError(path, "not a file")
    try:
        with path.open() as handle:
            head = [handle.readline() for _ in range(3)]
    except UnicodeDecodeError:
        raise PriceFileError(path, "not a text file") from None
    if not head[0].strip():
        raise PriceFileError(path, "the file is empty")
    expected = f"a Yahoo-format CSV has the columns Date, {', '.join(PRICE_COLUMNS)}"
    try:
        if head[0].startswith("Price,") and head[1].startswith("Ticker,"):
            raw = pd.read_csv(path, header=[0, 1], index_col=0)
            raw = raw.iloc[1:] if str(raw.index[0]).startswith("Date") else raw  # "Date,,,"
        else:
            raw = pd.read_csv(path)
            if "Date" not in raw.columns:
                raise PriceFileError(path, f"no Date column; {expected}")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise PriceFileError(path, f"not a CSV file ({first})") from None
    frame = _flat(raw)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise PriceFileError(path, f"missing columns {', '.join(missing)}; {expected}")
    if frame.empty:
        raise PriceFileError(path, "a header and no rows")
    dates = pd.to_datetime(frame.index, errors="coerce", format="mixed")
    if dates.isna().any():
        bad = [repr(str(v)) for v in frame.index[dates.isna()][:SHOWN_DATES]]
        raise PriceFileError(path, f"dates that are no dates: {', '.join(bad)}")
    frame.index = dates
    frame = normalize_frame(frame)
    for column in frame.columns.intersection(PRICE_COLUMNS):
        # Text that is no number becomes NaN, which validation reports with its date.
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _flat(raw: pd.DataFrame) -> pd.DataFrame:
    """One header row and the dates as the index, whichever header the file had."""
    if isinstance(raw.columns, pd.MultiIndex):
        raw = raw.copy()
        raw.columns = raw.columns.get_level_values(0)
    if "Date" in raw.columns:
        raw = raw.set_index("Date")
    return raw
