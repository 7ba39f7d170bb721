from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from services.core.calendar import holidays, is_trading_day, next_trading_day

pytestmark = pytest.mark.unit


def test_movable_holidays_follow_easter():
    assert {date(2025, 3, 3), date(2025, 3, 4), date(2025, 4, 18), date(2025, 6, 19)} <= holidays(
        2025
    )


def test_next_trading_day_skips_weekends_and_holidays():
    assert next_trading_day(date(2024, 12, 27)) == date(2024, 12, 30)  # over the weekend
    assert next_trading_day(date(2024, 12, 30)) == date(2025, 1, 2)  # past 31 Dec and 1 Jan
    assert next_trading_day(date(2025, 2, 28)) == date(2025, 3, 5)  # Carnival Monday and Tuesday
    assert next_trading_day(date(2025, 4, 17)) == date(2025, 4, 22)  # Good Friday, then Tiradentes


def test_calendar_matches_real_petr4_trading_days(shared_data):
    traded = pd.read_csv(shared_data / "PETR4.SA.csv", parse_dates=["Date"]).query("Volume > 0")
    traded_days = set(traded["Date"].dt.date)
    weekdays = [d.date() for d in pd.bdate_range("2021-01-01", "2024-12-30")]
    disagree = [d for d in weekdays if is_trading_day(d) != (d in traded_days)]
    assert disagree == []
