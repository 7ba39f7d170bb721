"""make bench-accuracy: a walk-forward evaluation of the product on real prices.

For each test year from 2019 to 2024, the product's recipe (``petr4-train``'s defaults,
through the same fold code) trains on everything before the year's validation block (the
252 targets before the year), calibrates on that block and forecasts every day of the
year. The classic interval forecasters of ``bench/classic.py`` forecast the same days from
what was known at each anchor, the seed project's recipe forecasts 2024's medians, and
``bench/hindsight.py`` shows what a forecaster that knew the next month's variance would
score. Nothing here looks at a test year to choose anything: designs are compared with
``--years 2013-2018``.

Each ticker runs in its own process, so its wall time and peak memory are its own.
``bench/accuracy_report.py`` scores the record and writes bench/reports/accuracy.{md,json},
the per-day forecasts (accuracy_forecasts.csv) and the plot accuracy.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bench.accuracy_report import HINDSIGHT, LSTM, markdown, plot, summarize
from scripts.harness.settings import DevSettings

ROOT = Path(__file__).resolve().parents[1]
DATA = DevSettings().shared_dir / "data"  # PETR4_DEV_SHARED_DIR moves it
REPORTS = ROOT / "bench" / "reports"
TICKERS = ("PETR4.SA", "VALE3.SA", "ITUB4.SA", "BBDC4.SA")
YEARS = list(range(2019, 2025))
SEED_RECIPE_YEAR = 2024


def walk_forward(
    ticker: str, scratch: Path, test_years: list[int], seed_recipe: bool = True
) -> dict:
    """Every year's fold of one ticker, in this process: per-day forecasts and costs."""
    import torch

    from bench.classic import CLASSIC
    from bench.hindsight import hindsight
    from bench.seed_recipe import seed_forecasts
    from services.core.logging import configure_logging
    from services.core.prices import read_price_csv, validate_prices
    from trainer.data import DataError
    from trainer.evaluate import interval_metrics
    from trainer.settings import TrainSettings
    from trainer.walk_forward import train_fold, yearly_folds

    configure_logging("WARNING")
    csv = DATA / f"{ticker}.csv"
    prices, _ = validate_prices(read_price_csv(csv), ticker)
    settings = TrainSettings(ticker=ticker, data=csv, progress_bar=False, work_dir=scratch)
    torch.set_num_threads(settings.threads)
    levels = tuple(settings.quantiles)
    frames, years, skipped = [], {}, {}
    for year in test_years:
        try:
            (dm,) = yearly_folds(prices, settings, [year])
        except DataError as exc:
            skipped[year] = str(exc)
            continue
        started = time.perf_counter()
        run = train_fold(settings, dm, scratch / str(year), logger=False)
        f = run.forecasts
        # The validation block's score, after calibration on it: what a choice may look at.
        val = dm.subset("val")
        val_q = run.served.forecast_windows(val)
        years[year] = {
            "seconds": time.perf_counter() - started,
            "fit_seconds": run.fit_seconds,
            "epochs": run.card.epochs,
            "calibration": run.card.calibration.to_dict(),
            "validation": interval_metrics(val_q.actual, val_q.prices, levels),
        }
        frame = pd.DataFrame({"anchor_date": f.anchor_dates, "year": year})
        frame["last_close"], frame["actual"] = f.last_close, f.actual
        for name, quantiles in {
            LSTM: f.prices,
            **{n: c(prices, f.anchor_dates) for n, c in CLASSIC.items()},
            HINDSIGHT: hindsight(prices, f.anchor_dates),
        }.items():
            for level, column in zip(levels, quantiles.T, strict=True):
                frame[f"{name}|{level}"] = column
        frames.append(frame)
    forecasts = pd.concat(frames, ignore_index=True)

    seed_seconds = None
    if seed_recipe:
        started = time.perf_counter()
        seed = seed_forecasts(prices, pd.Timestamp(f"{SEED_RECIPE_YEAR}-01-01"))
        seed_seconds = time.perf_counter() - started
        forecasts["seed recipe|0.5"] = (
            forecasts["anchor_date"].map(seed).where(forecasts["year"] == SEED_RECIPE_YEAR)
        )
    forecasts["anchor_date"] = forecasts["anchor_date"].dt.strftime("%Y-%m-%d")
    return {
        "forecasts": forecasts.to_dict(orient="list"),
        "years": years,
        "skipped": skipped,
        "seed_recipe_seconds": seed_seconds,
    }


def measured(ticker: str, years: list[int], seed_recipe: bool) -> dict:
    """One ticker's walk-forward in a child process; its wall time and peak RSS are its own."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.accuracy", "--one", ticker, "--years", _span(years)]
        + ([] if seed_recipe else ["--no-seed"]),
        cwd=ROOT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.PIPE,
        text=True,
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench-accuracy: the walk-forward of {ticker} failed")
    result = json.loads(output.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def _years(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def _span(years: list[int]) -> str:
    return f"{years[0]}-{years[-1]}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--one", metavar="TICKER", help=argparse.SUPPRESS)
    parser.add_argument("--tickers", nargs="+", default=list(TICKERS))
    parser.add_argument(
        "--years",
        type=_years,
        default=YEARS,
        metavar="FIRST-LAST",
        help=f"test years (default {_span(YEARS)}); earlier ones choose designs without a test year",
    )
    parser.add_argument(
        "--no-seed", action="store_true", help="skip the seed recipe (it trains 50 epochs)"
    )
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as scratch:
            print(json.dumps(walk_forward(args.one, Path(scratch), args.years, not args.no_seed)))
        return 0
    if not DATA.is_dir():
        print(
            f"bench-accuracy: skipped: real prices not found at {DATA} (they live beside the project)"
        )
        return 0

    started = time.perf_counter()
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "years": _span(args.years),
        "tickers": {},
    }
    for ticker in args.tickers:
        print(f"bench-accuracy: {ticker}: walk-forward {_span(args.years)} ...", flush=True)
        results["tickers"][ticker] = measured(ticker, args.years, not args.no_seed)
    results["wall_seconds"] = time.perf_counter() - started
    summary = summarize(results["tickers"], YEARS)  # the targets are set on these years

    REPORTS.mkdir(parents=True, exist_ok=True)
    frames = [pd.DataFrame(r["forecasts"]).assign(ticker=t) for t, r in results["tickers"].items()]
    pd.concat(frames).to_csv(REPORTS / "accuracy_forecasts.csv", index=False)
    for result in results["tickers"].values():
        del result["forecasts"]  # in the CSV
    (REPORTS / "accuracy.json").write_text(
        json.dumps({**results, "summary": summary}, indent=2, default=str)
    )
    plot(summary, REPORTS / "accuracy.png")
    report = markdown(results, summary)
    (REPORTS / "accuracy.md").write_text(report)
    print(report)
    print(
        f"written: {REPORTS / 'accuracy.md'}, accuracy.json, accuracy.png, accuracy_forecasts.csv"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
