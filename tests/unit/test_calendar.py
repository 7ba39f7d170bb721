from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from services.core.calendar import is_trading_day, next_trading_day, trading_days

pytestmark = pytest.mark.unit

# Weekdays B3 traded on that our price files have no traded row for: stale quotes with zero
# volume (2011's frozen run among them) and 2020-11-20, which Yahoo's history lacks.
NOT_IN_THE_DATA = {
    "2001-05-02", "2001-05-09", "2001-05-30", "2001-07-04", "2001-09-24", "2002-02-28",
    "2004-04-23", "2011-02-24", "2011-03-09", "2011-04-01", "2011-05-16", "2011-10-25",
    "2011-10-26", "2011-10-27", "2011-11-10", "2011-12-12", "2012-01-17", "2012-02-22",
    "2012-03-19", "2012-06-18", "2013-04-26", "2013-07-26", "2017-05-29", "2020-11-20",
}  # fmt: skip


def test_next_trading_day_skips_weekends_and_holidays():
    assert next_trading_day(date(2024, 12, 27)) == date(2024, 12, 30)  # over the weekend
    assert next_trading_day(date(2024, 12, 30)) == date(2025, 1, 2)  # past 31 Dec and 1 Jan
    assert next_trading_day(date(2025, 2, 28)) == date(2025, 3, 5)  # Carnival Monday and Tuesday
    assert next_trading_day(date(2025, 4, 17)) == date(2025, 4, 22)  # Good Friday, then Tiradentes
    assert next_trading_day(date(2024, 11, 19)) == date(2024, 11, 21)  # national since 2024
    assert next_trading_day(date(2024, 12, 28)) == date(2024, 12, 30)  # from a Saturday


def test_the_calendar_matches_every_traded_day_of_2001_to_2024(shared_data):
    traded = set()
    for ticker in ("PETR4.SA", "VALE3.SA"):
        frame = pd.read_csv(shared_data / f"{ticker}.csv", parse_dates=["Date"])
        rows = frame.loc[(frame["Volume"] > 0) & (frame["Date"] >= "2001-01-01"), "Date"]
        traded |= set(rows.dt.strftime("%Y-%m-%d"))
    sessions = set(trading_days(date(2001, 1, 1), date(2024, 12, 30)).strftime("%Y-%m-%d"))
    assert traded - sessions == set()  # every traded day is a session
    assert sessions - traded == NOT_IN_THE_DATA
    assert is_trading_day(date(2020, 7, 9)) and not is_trading_day(date(2019, 7, 9))
