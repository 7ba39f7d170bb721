from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.core.prices import (
    BAR_COLUMNS,
    PRICE_COLUMNS,
    PriceFileError,
    PriceValidationError,
    read_price_csv,
    validate_prices,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def bars() -> pd.DataFrame:
    days = pd.bdate_range("2024-01-02", periods=10, name="Date")
    close = np.linspace(30, 31, 10)
    return pd.DataFrame(
        {
            "Open": close - 0.1,
            "High": close + 0.3,
            "Low": close - 0.3,
            "Close": close,
            "Adj Close": close * 0.9,
            "Volume": np.full(10, 1e6),
        },
        index=days,
    )


def refused(frame: pd.DataFrame) -> str:
    with pytest.raises(PriceValidationError) as caught:
        validate_prices(frame, "TEST")
    return str(caught.value)


def test_clean_frame_passes(bars):
    clean, report = validate_prices(bars, "TEST")
    assert report.rows == 10
    assert list(clean.columns) == list(PRICE_COLUMNS)


def test_empty_frame(bars):
    assert "empty" in refused(bars.iloc[:0])


def test_wrong_columns(bars):
    message = refused(bars.drop(columns=["Adj Close"]).rename(columns={"Close": "close"}))
    assert "missing columns ['Close', 'Adj Close']" in message


def test_non_numeric_column(bars):
    bars["Volume"] = bars["Volume"].astype(str)
    assert "non-numeric columns ['Volume']" in refused(bars)


def test_nan_and_inf_named_by_date(bars):
    bars.iloc[3, bars.columns.get_loc("Close")] = np.nan
    bars.iloc[5, bars.columns.get_loc("High")] = np.inf
    assert "NaN or infinite values on 2024-01-05, 2024-01-09" in refused(bars)


def test_duplicated_dates(bars):
    doubled = pd.concat([bars, bars.iloc[[4]]]).sort_index()
    assert "duplicated dates 2024-01-08, 2024-01-08" in refused(doubled)


def test_unsorted_dates(bars):
    shuffled = bars.iloc[[0, 1, 3, 2, 4]]
    assert "dates not sorted: 2024-01-04 comes after a later date" in refused(shuffled)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_zero_or_negative_prices(bars, value):
    bars.iloc[2, bars.columns.get_loc("Low")] = value
    assert "zero or negative prices on 2024-01-04" in refused(bars)


def test_high_below_body(bars):
    bars.iloc[6, bars.columns.get_loc("High")] = bars["Close"].iloc[6] * 0.9
    assert "High below max(Open, Close) on 2024-01-10" in refused(bars)


def test_low_above_body(bars):
    bars.iloc[7, bars.columns.get_loc("Low")] = bars["Close"].iloc[7] * 1.1
    assert "Low above min(Open, Close) on 2024-01-11" in refused(bars)


def test_small_ohlc_slip_is_reported_not_refused(bars):
    bars.iloc[1, bars.columns.get_loc("High")] = bars["Close"].iloc[1] * 0.99
    clean, report = validate_prices(bars, "TEST")
    assert report.ohlc_slips == ["2024-01-03"]
    assert clean["High"].iloc[1] == bars["High"].iloc[1]  # reported, never changed


def test_every_broken_rule_is_listed(bars):
    bars.iloc[1, bars.columns.get_loc("Open")] = np.nan
    bars.iloc[2, bars.columns.get_loc("Close")] = -5
    message = refused(bars)
    assert "NaN or infinite values on 2024-01-03" in message
    assert "zero or negative prices on 2024-01-04" in message


def test_zero_volume_rows_dropped_and_counted(bars):
    bars.iloc[[2, 3], bars.columns.get_loc("Volume")] = 0
    clean, report = validate_prices(bars, "TEST")
    assert report.dropped_zero_volume == 2
    assert len(clean) == 8


def test_big_moves_reported_not_changed(bars):
    bars.iloc[5:, :5] = bars.iloc[5:, :5] * 1.5
    clean, report = validate_prices(bars, "TEST")
    assert report.big_moves == [("2024-01-09", pytest.approx(0.5, abs=0.02))]
    assert clean["Close"].iloc[5] == bars["Close"].iloc[5]


def test_reads_classic_and_yfinance_csv_headers(tmp_path, bars):
    classic = tmp_path / "classic.csv"
    bars.to_csv(classic)
    multi = tmp_path / "multi.csv"
    multi.write_text(
        "Price,Adj Close,Close,High,Low,Open,Volume\n"
        "Ticker,X.SA,X.SA,X.SA,X.SA,X.SA,X.SA\n"
        "Date,,,,,,\n"
        + "".join(
            f"{d:%Y-%m-%d},{r['Adj Close']},{r.Close},{r.High},{r.Low},{r.Open},{int(r.Volume)}\n"
            for d, r in bars.iterrows()
        )
    )
    a, _ = validate_prices(read_price_csv(classic))
    b, _ = validate_prices(read_price_csv(multi))
    pd.testing.assert_frame_equal(a, b, check_freq=False)
    assert a.index[0] == pd.Timestamp("2024-01-02")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not a file"),  # a folder
        (b"", "the file is empty"),
        (bytes(range(256)), "not a text file"),
        (b"hello\nworld\n", "no Date column; a Yahoo-format CSV has the columns Date, Open"),
        (b"Date,Open,High\n2024-01-02,1,2\n", "missing columns Low, Close, Adj Close, Volume"),
        (b"Date,Open,High,Low,Close,Adj Close,Volume\n", "a header and no rows"),
        (
            b"Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-32,1,2,1,1,1,1\n",
            "dates that are no dates: '2024-01-32'",
        ),
    ],
)
def test_a_bad_price_file_names_itself_and_its_problem(tmp_path, content, problem):
    path = tmp_path / "prices.csv"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(PriceFileError) as caught:
        read_price_csv(path)
    assert str(caught.value).startswith(f"price file {path}: {problem}")


def test_bars_need_no_adjusted_close(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,100\n")
    assert list(read_price_csv(path, BAR_COLUMNS).columns) == list(BAR_COLUMNS)
    with pytest.raises(PriceFileError, match="missing columns Adj Close"):
        read_price_csv(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PriceFileError, match=r"price file .*nope.csv: no such file"):
        read_price_csv(tmp_path / "nope.csv")


def test_missing_adj_close_says_how_to_download_it(bars):
    message = refused(bars.drop(columns=["Adj Close"]))
    assert "missing columns ['Adj Close']" in message
    assert "download with auto_adjust=False" in message


def test_a_yahoo_batch_is_split_into_each_tickers_own_frame():
    """yfinance gives a batch as one frame with (field, ticker) columns; a ticker it could not
    fetch comes as all-NaN columns, and is left out rather than given as empty prices."""
    from services.ingestion.sources import split_batch

    days = pd.date_range("2024-01-02", periods=3, name="Date")
    fields = ["Adj Close", "Close", "High", "Low", "Open", "Volume"]
    columns = pd.MultiIndex.from_product(
        [fields, ["PETR4.SA", "GONE3.SA"]], names=["Price", "Ticker"]
    )
    frame = pd.DataFrame(np.nan, index=days, columns=columns)
    for field in fields:
        frame[(field, "PETR4.SA")] = [1.0, 2.0, 3.0]
    split = split_batch(frame, ["PETR4.SA", "GONE3.SA"])
    assert list(split) == ["PETR4.SA"]
    assert list(split["PETR4.SA"].columns) == fields and split["PETR4.SA"]["Close"].tolist() == [
        1,
        2,
        3,
    ]
    assert split_batch(pd.DataFrame(), ["PETR4.SA"]) == {}  # offline: an empty frame
