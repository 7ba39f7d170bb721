"""One ingestion pass over the tickers: fetch, validate, reconcile with history, commit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from requests import RequestException

from services.core import tracking
from services.core.prices import OHLC, PriceValidationError, validate_prices
from services.core.snapshots import Snapshot, SnapshotStore
from services.ingestion.settings import IngestSettings
from services.ingestion.sources import PriceSource, SourceError

log = logging.getLogger(__name__)


class HistoryConflict(ValueError):
    """The source rewrote history that is already stored."""


@dataclass
class TickerResult:
    ticker: str
    status: str  # committed | unchanged | validated | failed
    rows: int = 0
    new_rows: int = 0
    last_date: str = ""
    run_id: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def _conflicting_dates(stored: pd.DataFrame, fresh: pd.DataFrame, tolerance: float) -> list[str]:
    common = stored.index.intersection(fresh.index)
    old = stored.loc[common, list(OHLC)].to_numpy()
    new = fresh.loc[common, list(OHLC)].to_numpy()
    differs = (np.abs(new - old) > tolerance * np.abs(old)).any(axis=1)
    return [d.strftime("%Y-%m-%d") for d in common[differs]]


def reconcile(
    stored: pd.DataFrame, fresh: pd.DataFrame, tolerance: float, ticker: str
) -> pd.DataFrame:
    """Stored history plus the fresh rows it lacks; refuses a rewrite of stored dates.

    Only OHLC is compared: ``Adj Close`` is rebased by Yahoo at every dividend, and the
    last day's volume is often revised.
    """
    conflicts = _conflicting_dates(stored, fresh, tolerance)
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (
            f" (+{len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        )
        raise HistoryConflict(
            f"{ticker}: the source rewrote stored history beyond {tolerance:.2%} on {shown}; "
            "the stored snapshot is kept (after a split, re-run with --full-refresh)"
        )
    added = fresh.loc[~fresh.index.isin(stored.index)]
    return pd.concat([stored, added]).sort_index()


@dataclass
class Plan:
    """What one ticker's refresh starts from: its latest snapshot, its rows, where to fetch from."""

    previous: Snapshot | None = None
    stored: pd.DataFrame | None = None
    start: date | None = None


def ingest(
    tickers: list[str], source: PriceSource, store: SnapshotStore, settings: IngestSettings
) -> list[TickerResult]:
    """Refresh every ticker: one look at the stored snapshots, one download of what is new (a
    batch, where the source takes one), then each ticker validated, reconciled and committed
    on its own. A ticker that fails is reported and commits nothing; the others go on."""
    try:
        latest = {} if settings.full_refresh else store.latest_of(tickers)
    except Exception as exc:
        return [_failure(t, exc) for t in tickers]
    results: dict[str, TickerResult] = {}
    plans: dict[str, Plan] = {}
    for ticker in tickers:
        previous = latest.get(ticker)
        if settings.if_missing and previous is not None:
            results[ticker] = TickerResult(
                ticker,
                "unchanged",
                rows=previous.rows,
                last_date=previous.last_date,
                run_id=previous.run_id,
                message="a snapshot exists and --if-missing was given",
            )
            continue
        try:
            plans[ticker] = _plan(previous, store, settings)
        except Exception as exc:
            results[ticker] = _failure(ticker, exc)
    try:
        fetched = source.fetch_many({t: p.start for t, p in plans.items()}) if plans else {}
    except Exception as exc:  # the source itself broke: every ticker it was asked for failed
        fetched = {}
        for ticker in plans:
            results[ticker] = _failure(ticker, exc)
        plans = {}
    for ticker, plan in plans.items():
        results[ticker] = _refresh(ticker, plan, fetched[ticker], source, store, settings)
    return [results[t] for t in tickers]


def _plan(previous: Snapshot | None, store: SnapshotStore, settings: IngestSettings) -> Plan:
    if previous is None:
        return Plan()
    stored = store.load(previous, settings.cache_dir / "snapshots")
    start = (stored.index[-1] - timedelta(days=settings.overlap_days)).date()
    return Plan(previous, stored, start)


def _refresh(
    ticker: str,
    plan: Plan,
    fetched: pd.DataFrame | SourceError,
    source: PriceSource,
    store: SnapshotStore,
    settings: IngestSettings,
) -> TickerResult:
    """Validate, reconcile and commit one ticker. Errors become a failed result; nothing is
    committed then."""
    previous, stored = plan.previous, plan.stored
    try:
        if isinstance(fetched, SourceError):
            raise fetched
        fresh, report = validate_prices(fetched, ticker, settings.ohlc_tolerance)
        frame = fresh
        if stored is not None:
            frame = reconcile(stored, fresh, settings.history_tolerance, ticker)
            frame, report = validate_prices(frame, ticker, settings.ohlc_tolerance)
            if len(frame) == len(stored):
                if not settings.dry_run:
                    store.point_to(previous)  # snapshots from before the pointers get theirs
                return TickerResult(
                    ticker,
                    "unchanged",
                    rows=len(frame),
                    last_date=previous.last_date,
                    run_id=previous.run_id,
                    message="no new trading day since the last snapshot",
                )
        new_rows = len(frame) - (len(stored) if stored is not None else 0)
        last_date = frame.index[-1].strftime("%Y-%m-%d")
        if settings.dry_run:
            return TickerResult(
                ticker,
                "validated",
                rows=len(frame),
                new_rows=new_rows,
                last_date=last_date,
                message=f"dry run, nothing committed; {report.summary()}",
            )
        snapshot = store.commit(ticker, frame, source.name, source.synthetic, note=report.summary())
        return TickerResult(
            ticker,
            "committed",
            rows=snapshot.rows,
            new_rows=new_rows,
            last_date=last_date,
            run_id=snapshot.run_id,
            message=report.summary(),
        )
    except Exception as exc:
        return _failure(ticker, exc)


def _failure(ticker: str, exc: Exception) -> TickerResult:
    """One line for a ticker's failure; the traceback of an unexpected one goes to the log."""
    if isinstance(exc, SourceError | PriceValidationError | HistoryConflict):
        return TickerResult(ticker, "failed", message=str(exc))
    if isinstance(exc, MlflowException | RequestException):  # the server went away mid-run
        log.debug("ingestion of %s failed", ticker, exc_info=exc)
        uri = mlflow.get_tracking_uri()
        return TickerResult(ticker, "failed", message=tracking.describe(exc, uri))
    # A disk full, a bug: one line here, the traceback in the log.
    log.error("ingestion of %s failed unexpectedly", ticker, exc_info=exc)
    return TickerResult(ticker, "failed", message=f"{type(exc).__name__}: {exc}")
