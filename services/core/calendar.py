"""B3's trading calendar: weekdays less the national holidays the exchange closes for."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

_FIXED = {
    (1, 1),
    (4, 21),
    (5, 1),
    (9, 7),
    (10, 12),
    (11, 2),
    (11, 15),
    (12, 24),
    (12, 25),
    (12, 31),
}


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous algorithm of Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=64)
def holidays(year: int) -> frozenset[date]:
    """Days B3 is closed in ``year``: national fixed dates, Carnival, Good Friday, Corpus
    Christi, the last weekday of the year, and São Paulo's own holidays until 2021."""
    easter = _easter(year)
    movable = {easter - timedelta(days=48), easter - timedelta(days=47), easter - timedelta(days=2)}
    movable.add(easter + timedelta(days=60))
    fixed = {date(year, month, day) for month, day in _FIXED}
    if year >= 2024 or year < 2022:
        fixed.add(date(year, 11, 20))  # national since 2024; São Paulo's before 2022
    if year < 2022:  # B3 has opened on its city's holidays since 2022
        fixed |= {date(year, 1, 25), date(year, 7, 9)}
    last_weekday = date(year, 12, 31)
    while last_weekday.weekday() >= 5:
        last_weekday -= timedelta(days=1)
    fixed.add(last_weekday)  # no trading on the year's last business day
    return frozenset(fixed | movable)


def is_trading_day(day: date) -> bool:
    return day.weekday() < 5 and day not in holidays(day.year)


def next_trading_day(day: date) -> date:
    following = day + timedelta(days=1)
    while not is_trading_day(following):
        following += timedelta(days=1)
    return following
