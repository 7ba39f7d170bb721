"""B3's trading calendar: exchange_calendars' BVMF.

A maintained calendar rather than rules of our own: it matches every day PETR4 and VALE3
traded from 2001 to 2024, city holidays that came and went and one-off closures included,
which the hand-written rules this replaced did not (20 November 2001-2003, 9 July 2020).
"""

from __future__ import annotations

import warnings
from datetime import date
from functools import lru_cache

import exchange_calendars
import pandas as pd

# Sessions are computed once for this span; a forecast never looks further ahead.
_FIRST, _YEARS_AHEAD = "2000-01-01", 3


@lru_cache(maxsize=1)
def _b3() -> exchange_calendars.ExchangeCalendar:
    last = pd.Timestamp(date.today()) + pd.DateOffset(years=_YEARS_AHEAD)
    with warnings.catch_warnings():
        # exchange_calendars 4.13 builds its sessions with a pandas API that pandas 3.1 deprecates.
        warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
        return exchange_calendars.get_calendar("BVMF", start=_FIRST, end=last.strftime("%Y-%m-%d"))


def trading_days(first: date, last: date) -> pd.DatetimeIndex:
    """B3's sessions from ``first`` to ``last``, both included."""
    return _b3().sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))


def is_trading_day(day: date) -> bool:
    return _b3().is_session(pd.Timestamp(day))


@lru_cache(maxsize=4096)
def next_trading_day(day: date) -> date:
    """The session after ``day``, whether or not ``day`` is one."""
    following = pd.Timestamp(day) + pd.Timedelta(days=1)
    return _b3().date_to_session(following, direction="next").date()
