"""Where prices come from: Yahoo Finance, a Yahoo-format CSV, or a seeded synthetic series."""

from __future__ import annotations

import logging
import socket
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from services.core.calendar import trading_days
from services.core.prices import PriceFileError, normalize_frame, read_price_csv

log = logging.getLogger(__name__)

YAHOO_HOST = "query1.finance.yahoo.com"


class SourceError(RuntimeError):
    """The source could not give prices (network, empty download, missing file)."""


Fetched = dict[str, pd.DataFrame | SourceError]  # by ticker: its bars, or why there are none


class PriceSource(Protocol):
    name: str
    synthetic: bool

    def fetch(self, ticker: str, start: date | None) -> pd.DataFrame:
        """Daily bars of ``ticker`` from ``start`` (None: all history)."""
        ...

    def fetch_many(self, starts: dict[str, date | None]) -> Fetched:
        """Each ticker's bars from its start; a ticker that fails does not fail the others."""
        ...


def fetch_each(source: PriceSource, starts: dict[str, date | None]) -> Fetched:
    """``fetch_many`` for a source without batches: one ticker at a time."""
    fetched: Fetched = {}
    for ticker, start in starts.items():
        try:
            fetched[ticker] = source.fetch(ticker, start)
        except SourceError as exc:
            fetched[ticker] = exc
    return fetched


def split_batch(frame: pd.DataFrame | None, tickers: list[str]) -> dict[str, pd.DataFrame]:
    """A batch download's frame (columns: field, ticker) as each ticker's own frame; a
    ticker Yahoo gave nothing for (all NaN, or absent) is left out."""
    found = {}
    if frame is None or frame.empty or not isinstance(frame.columns, pd.MultiIndex):
        return found
    present = set(frame.columns.get_level_values(1))
    for ticker in tickers:
        if ticker in present:
            own = frame.xs(ticker, axis=1, level=1).dropna(how="all")
            if not own.empty:
                found[ticker] = normalize_frame(own)
    return found


def _network_reason(host: str) -> str | None:
    """Why ``host`` cannot be reached, or None when it can."""
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        return f"network unreachable: cannot resolve {host} ({exc.strerror or exc})"
    try:
        with socket.create_connection((host, 443), timeout=5):
            return None
    except OSError as exc:
        return f"network unreachable: cannot connect to {host}:443 ({exc.strerror or exc})"


@dataclass
class YahooSource:
    """yfinance with ``auto_adjust=False``: quoted Close and dividend-adjusted Adj Close."""

    first_date: date
    cache_dir: Path | None = None
    name: str = "yahoo"
    synthetic: bool = False

    def fetch(self, ticker: str, start: date | None) -> pd.DataFrame:
        result = self.fetch_many({ticker: start})[ticker]
        if isinstance(result, SourceError):
            raise result
        return result

    def fetch_many(self, starts: dict[str, date | None]) -> Fetched:
        """One batch download per start date (an incremental refresh has one): yfinance
        fetches the batch's tickers in parallel and gives them as one frame."""
        import yfinance as yf  # only this source needs it
        from yfinance import shared as yf_shared

        if self.cache_dir is not None:  # yfinance caches time zones; keep them off a read-only root
            yf.set_tz_cache_location(str(self.cache_dir))
        by_start: dict[date, list[str]] = {}
        for ticker, start in starts.items():
            by_start.setdefault(start or self.first_date, []).append(ticker)
        fetched: Fetched = {}
        for start, tickers in by_start.items():
            frame = yf.download(
                tickers,
                start=start.isoformat(),
                auto_adjust=False,
                actions=False,
                progress=False,
                threads=True,
                group_by="column",
                multi_level_index=True,
            )
            found = split_batch(frame, tickers)
            errors = getattr(yf_shared, "_ERRORS", {})  # yfinance's own word on each failure
            reason = None if found else _network_reason(YAHOO_HOST)
            for ticker in tickers:
                if ticker in found:
                    fetched[ticker] = found[ticker]
                    continue
                # Offline, yfinance logs the failure and gives empty columns instead of raising.
                why = reason or errors.get(ticker) or "the ticker may be unknown or delisted"
                fetched[ticker] = SourceError(f"Yahoo returned no rows for {ticker}: {why}")
        return fetched


@dataclass
class CsvSource:
    """A Yahoo-format CSV; ``{ticker}`` in the path stands for each ticker."""

    path_template: str
    name: str = "csv"
    synthetic: bool = False

    def fetch_many(self, starts: dict[str, date | None]) -> Fetched:
        return fetch_each(self, starts)

    def path(self, ticker: str) -> Path:
        return Path(self.path_template.replace("{ticker}", ticker))

    def fetch(self, ticker: str, start: date | None) -> pd.DataFrame:
        try:
            frame = read_price_csv(self.path(ticker))
        except PriceFileError as exc:
            raise SourceError(str(exc)) from exc
        if start is not None:
            frame = frame.loc[frame.index >= pd.Timestamp(start)]
        return frame


@dataclass
class SyntheticSource:
    """A seeded daily series with volatility clustering, weekends and holidays.

    Returns follow a GARCH(1, 1) with Student-t shocks, so calm and stormy months
    alternate as in real prices. The path depends only on the seed and the ticker, so
    a later ``end`` extends the same history: incremental ingestion works on it too.
    """

    seed: int = 42
    first_date: date = date(2010, 1, 4)
    end: date | None = None
    name: str = "synthetic"
    synthetic: bool = True

    def fetch_many(self, starts: dict[str, date | None]) -> Fetched:
        return fetch_each(self, starts)

    def trading_days(self, end: date) -> pd.DatetimeIndex:
        return trading_days(self.first_date, end)

    def fetch(self, ticker: str, start: date | None) -> pd.DataFrame:
        days = self.trading_days(self.end or date.today())
        # One generator per stream: each draw of n values then starts with the same n - 1
        # values as a shorter draw, so a later end only appends days.
        shock_rng, gap_rng, spread_rng, volume_rng = (
            np.random.default_rng([self.seed, zlib.crc32(ticker.encode()), stream])
            for stream in range(4)
        )
        n = len(days)
        omega, alpha, beta, nu = 1e-5, 0.08, 0.90, 5.0  # about 35 % a year, like PETR4
        shocks = shock_rng.standard_t(nu, size=n) / np.sqrt(nu / (nu - 2))
        variance = omega / (1 - alpha - beta)
        returns = np.empty(n)
        for t in range(n):
            returns[t] = 2e-4 + np.sqrt(variance) * shocks[t]
            variance = omega + alpha * returns[t] ** 2 + beta * variance
        close = 20.0 * np.exp(np.cumsum(returns))
        gap = gap_rng.normal(0, 0.3, n) * np.sqrt(omega / (1 - alpha - beta))
        open_ = np.r_[close[0], close[:-1]] * np.exp(gap)
        spread = np.abs(spread_rng.normal(0, 0.012, (n, 2))).T
        high = np.maximum(open_, close) * (1 + spread[0])
        low = np.minimum(open_, close) * (1 - spread[1])
        volume = np.round(volume_rng.lognormal(17.5, 0.35, n) * (1 + 20 * np.abs(returns)))
        frame = pd.DataFrame(
            {
                "Open": open_.round(2),
                "High": high.round(2),
                "Low": low.round(2),
                "Close": close.round(2),
                "Adj Close": close.round(2),
                "Volume": volume,
            },
            index=days.rename("Date"),
        )
        # Rounding can push the body outside the range by a cent; restore the ordering.
        frame["High"] = frame[["High", "Open", "Close"]].max(axis=1)
        frame["Low"] = frame[["Low", "Open", "Close"]].min(axis=1)
        if start is not None:
            frame = frame.loc[frame.index >= pd.Timestamp(start)]
        return frame


def make_source(
    spec: str, *, seed: int, yahoo_first_date: date, cache_dir: Path | None
) -> PriceSource:
    """``yahoo``, ``csv:PATH`` or ``synthetic``."""
    if spec == "yahoo":
        return YahooSource(first_date=yahoo_first_date, cache_dir=cache_dir)
    if spec == "synthetic":
        return SyntheticSource(seed=seed)
    if spec.startswith("csv:") and len(spec) > 4:
        return CsvSource(spec[4:])
    raise ValueError(f"unknown source {spec!r}: use 'yahoo', 'csv:PATH' or 'synthetic'")


def yahoo_reachable() -> bool:
    return _network_reason(YAHOO_HOST) is None


__all__ = [
    "CsvSource",
    "Fetched",
    "PriceSource",
    "SourceError",
    "SyntheticSource",
    "YahooSource",
    "fetch_each",
    "make_source",
    "split_batch",
    "yahoo_reachable",
]
