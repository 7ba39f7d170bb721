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

PRICE_COLUMNS: tuple[str, ...] = ("Open", "High", "Low", "Close", "Adj Close", "Volume")
OHLC: tuple[str, ...] = ("Open", "High", "Low", "Close")
BAR_COLUMNS: tuple[str, ...] = (*OHLC, "Volume")  # what a request's bar carries
BIG_MOVE = 0.30  # daily moves beyond this are reported, never changed
# Yahoo's own history has bars whose High or Low misses Open/Close by up to 2.75 %
# (35 of 12,500 PETR4 and VALE3 bars, 2001-2014). Such slips are reported; larger
# ones mean a corrupted row and are refused.
OHLC_TOLERANCE = 0.03
_SHOWN_DATES = 5


class PriceValidationError(ValueError):
    """A price frame broke one or more rules; ``problems`` has one line per rule."""

    def __init__(self, subject: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{subject}: " + "; ".join(problems))


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
            moves = ", ".join(f"{day} {move:+.0%}" for day, move in self.big_moves[:_SHOWN_DATES])
            more = len(self.big_moves) - _SHOWN_DATES
            parts.append(
                f"moves over {BIG_MOVE:.0%}: {moves}" + (f" (+{more} more)" if more > 0 else "")
            )
        if self.ohlc_slips:
            shown = ", ".join(self.ohlc_slips[:_SHOWN_DATES])
            more = len(self.ohlc_slips) - _SHOWN_DATES
            parts.append(
                f"{len(self.ohlc_slips)} bars with High/Low slightly inside Open/Close: {shown}"
                + (f" (+{more} more)" if more > 0 else "")
            )
        return ", ".join(parts)


def _dates(index: pd.Index, mask: np.ndarray | pd.Series) -> str:
    days = [d.strftime("%Y-%m-%d") for d in index[np.asarray(mask, dtype=bool)]]
    shown = ", ".join(days[:_SHOWN_DATES])
    return shown + (f" (+{len(days) - _SHOWN_DATES} more)" if len(days) > _SHOWN_DATES else "")


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
    index = frame.index
    problems: list[str] = []
    if index.tz is not None:
        problems.append("dates carry a time zone; expected naive trading dates")
    duplicated = index.duplicated(keep=False)
    if duplicated.any():
        problems.append(f"duplicated dates {_dates(index, duplicated)}")
    elif not index.is_monotonic_increasing:
        backwards = np.r_[False, np.diff(index.asi8) < 0]
        problems.append(f"dates not sorted: {_dates(index, backwards)} comes after a later date")

    values = frame.to_numpy()
    non_finite = ~np.isfinite(values).all(axis=1)
    if non_finite.any():
        problems.append(f"NaN or infinite values on {_dates(index, non_finite)}")
    with np.errstate(invalid="ignore"):
        not_positive = (frame[[*OHLC, "Adj Close"]] <= 0).any(axis=1) & ~non_finite
        if not_positive.any():
            problems.append(f"zero or negative prices on {_dates(index, not_positive)}")
        negative_volume = frame["Volume"] < 0
        if negative_volume.any():
            problems.append(f"negative volume on {_dates(index, negative_volume)}")
        body_top = frame[["Open", "Close"]].max(axis=1)
        body_bottom = frame[["Open", "Close"]].min(axis=1)
        high_miss = body_top / frame["High"] - 1  # > 0: High below the body
        low_miss = 1 - body_bottom / frame["Low"]  # > 0: Low above the body
        high_low = high_miss > ohlc_tolerance
        if high_low.any():
            problems.append(f"High below max(Open, Close) on {_dates(index, high_low)}")
        low_high = low_miss > ohlc_tolerance
        if low_high.any():
            problems.append(f"Low above min(Open, Close) on {_dates(index, low_high)}")
        slips = ((high_miss > 1e-6) | (low_miss > 1e-6)) & ~high_low & ~low_high
    if problems:
        raise PriceValidationError(subject, problems)

    traded = frame["Volume"] > 0
    clean = frame.loc[traded]
    if clean.empty:
        raise PriceValidationError(subject, ["every row has zero volume (no trading day left)"])
    report = ValidationReport(
        rows=len(clean),
        dropped_zero_volume=int((~traded).sum()),
        ohlc_slips=[d.strftime("%Y-%m-%d") for d in index[(slips & traded).to_numpy()]],
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
        bad = [repr(str(v)) for v in frame.index[dates.isna()][:_SHOWN_DATES]]
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
