"""make bench-accuracy: a walk-forward evaluation of the product on real prices, every stock.

For each test year from 2019 to 2024, the product's two recipes forecast every day of the
year through the same fold code as ``petr4-train``, each trained on everything before the
year's validation block (the 252 target days before the year) and calibrated on that block:

- pooled (``petr4-train --tickers``): one network for every stock with the history for the
  year, each stock scaled by its own training rows;
- per ticker (``petr4-train --ticker``): one network per stock.

On the same days, the classic interval forecasters of ``bench/classic.py`` forecast from what
was known at each anchor, ``bench/hindsight.py`` shows what knowing the next month's variance
would score, and the seed project's recipe forecasts PETR4's 2024. Nothing here looks at a
reported year to choose anything: designs are compared with ``--years 2017-2018``.

Each job (one stock's per-ticker walk-forward with its baselines, or one year's pooled
training) runs in a process of its own, ``--jobs`` at a time, so its wall time and peak
memory are its own. ``bench/accuracy_report.py`` scores the record and writes
bench/reports/accuracy.{md,json}, the per-day forecasts (accuracy_forecasts.csv) and the plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bench.accuracy_report import FIXED, HINDSIGHT, LSTM, POOLED, markdown, plot, summarize
from scripts.harness.settings import DevSettings

ROOT = Path(__file__).resolve().parents[1]
DATA = DevSettings().shared_dir / "data"  # PETR4_DEV_SHARED_DIR moves it
REPORTS = ROOT / "bench" / "reports"
INDEX = "BVSP"  # the Ibovespa's file: an index, not a stock to forecast
YEARS = list(range(2019, 2025))
SEED_RECIPE = ("PETR4.SA", 2024)  # the seed project's stock, and the year it is scored on


def stocks() -> list[str]:
    """Every stock in the shared data, PETR4.SA first."""
    found = sorted(p.stem for p in DATA.glob("*.csv") if p.stem != INDEX)
    return sorted(found, key=lambda t: t != "PETR4.SA")


def stock_prices(ticker: str) -> pd.DataFrame:
    from services.core.prices import read_price_csv, validate_prices

    return validate_prices(read_price_csv(DATA / f"{ticker}.csv"), ticker)[0]


def add_quantiles(frame: pd.DataFrame, name: str, quantiles, levels) -> None:
    for level, column in zip(levels, quantiles.T, strict=True):
        frame[f"{name}|{level}"] = column


def per_ticker(
    ticker: str, years: list[int], scratch: Path, args: list[str], network: bool = True
) -> dict:
    """One stock's walk-forward, in this process: its own network each year it can train
    (unless not ``network``), and the classic forecasters and the hindsight reference on
    every day of each year."""
    import torch

    from bench.classic import CLASSIC
    from bench.hindsight import hindsight
    from bench.seed_recipe import seed_forecasts
    from services.core.features import WARMUP
    from services.core.settings import parse_settings
    from trainer.data import DataError, target_dates
    from trainer.evaluate import interval_metrics
    from trainer.settings import TrainSettings
    from trainer.walk_forward import train_fold, yearly_folds

    prices = stock_prices(ticker)
    settings = parse_settings(TrainSettings, ["--ticker", ticker, *args], "bench", "")
    settings = settings.model_copy(update={"progress_bar": False, "work_dir": scratch})
    torch.set_num_threads(settings.threads)
    levels = tuple(settings.quantiles)
    anchors = prices.index[WARMUP + settings.window - 1 : -1]
    targets = target_dates(prices, anchors)
    frames, trained, skipped = [], {}, {}
    for year in years:
        days = anchors[targets.year == year]
        if not len(days):
            skipped[year] = "no target day that year"
            continue
        frame = pd.DataFrame({"anchor_date": days, "year": year})
        frame["last_close"] = prices["Close"].reindex(days).to_numpy()
        frame["actual"] = prices["Close"].shift(-1).reindex(days).to_numpy()
        for name, forecaster in {**CLASSIC, HINDSIGHT: hindsight}.items():
            add_quantiles(frame, name, forecaster(prices, days), levels)
        frames.append(frame)
        if not network:
            continue
        try:
            (dm,) = yearly_folds({ticker: prices}, settings, [year])
        except DataError as exc:
            skipped[year] = str(exc)
        else:
            started = time.perf_counter()
            run = train_fold(settings, dm, scratch / str(year), logger=False)
            f = run.forecasts[ticker]
            assert f.anchor_dates.equals(pd.DatetimeIndex(days))  # the year's target days
            add_quantiles(frame, LSTM, f.prices, levels)
            val = run.served.for_ticker(ticker).forecast_windows(dm.subset("val"))
            trained[year] = {
                "seconds": time.perf_counter() - started,
                "epochs": run.card.epochs,
                "validation": interval_metrics(val.actual, val.prices, levels),
            }
    if not frames:
        return {"forecasts": {}, "years": {}, "skipped": skipped, "seed_recipe_seconds": None}
    forecasts = pd.concat(frames, ignore_index=True)
    seed_seconds = None
    if (ticker, SEED_RECIPE[1]) == SEED_RECIPE and SEED_RECIPE[1] in years:
        started = time.perf_counter()
        seed = seed_forecasts(prices, pd.Timestamp(f"{SEED_RECIPE[1]}-01-01"))
        seed_seconds = time.perf_counter() - started
        in_year = forecasts["year"] == SEED_RECIPE[1]
        forecasts["seed recipe|0.5"] = forecasts["anchor_date"].map(seed).where(in_year)
    forecasts["anchor_date"] = forecasts["anchor_date"].dt.strftime("%Y-%m-%d")
    return {
        "forecasts": forecasts.to_dict(orient="list"),
        "years": trained,
        "skipped": skipped,
        "seed_recipe_seconds": seed_seconds,
    }


def pooled(tickers: list[str], year: int, scratch: Path, args: list[str]) -> dict:
    """One year's pooled training on every stock that has the history for it, in this process."""
    import numpy as np
    import torch

    from services.core.settings import parse_settings
    from trainer.evaluate import interval_metrics
    from trainer.settings import TrainSettings
    from trainer.walk_forward import train_fold, yearly_folds

    prices = {t: stock_prices(t) for t in tickers}
    settings = parse_settings(TrainSettings, ["--tickers", *tickers, *args], "bench", "")
    settings = settings.model_copy(update={"progress_bar": False, "work_dir": scratch})
    torch.set_num_threads(settings.threads)
    levels = tuple(settings.quantiles)
    started = time.perf_counter()
    (dm,) = yearly_folds(prices, settings, [year])
    run = train_fold(settings, dm, scratch, logger=False)
    forecasts, validation = {}, {}
    for ticker, f in run.forecasts.items():
        served = run.served.for_ticker(ticker)
        fixed = served.calibrated(replace(served.calibration, step=0.0))
        unadapted = fixed.forecast_windows(dm.subset("test", ticker)).prices  # the same days
        forecasts[ticker] = {
            "anchor_date": f.anchor_dates.strftime("%Y-%m-%d").tolist(),
            **{f"{POOLED}|{q}": f.prices[:, i].tolist() for i, q in enumerate(levels)},
            **{f"{FIXED}|{q}": unadapted[:, i].tolist() for i, q in enumerate(levels)},
        }
        val = served.forecast_windows(dm.subset("val", ticker))
        validation[ticker] = interval_metrics(val.actual, val.prices, levels)
    return {
        "year": year,
        "tickers": len(dm.tickers),
        "train_windows": int(sum(dm.mask("train", t).sum() for t in dm.tickers)),
        "seconds": time.perf_counter() - started,
        "fit_seconds": run.fit_seconds,
        "epochs": run.card.epochs,
        "calibration": {t: f.calibration.to_dict() for t, f in run.card.tickers.items()},
        "left_out": dm.left_out,
        "validation": validation,
        "validation_mean_interval_ratio": float(
            np.mean([validation[t]["interval_score_brl"] for t in validation])
        ),
        "forecasts": forecasts,
    }


def measured(job: list[str]) -> dict:
    """One job in a child process; its wall time and peak RSS are its own."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.accuracy", "--job", *job],
        cwd=ROOT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.PIPE,
        text=True,
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:  # reported, and the other jobs go on
        print(f"bench-accuracy: the job {' '.join(job[:2])} failed", file=sys.stderr, flush=True)
        result = {"failed": " ".join(job[:2]), "forecasts": {}, "years": {}, "left_out": {}}
    else:
        result = json.loads(output.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def _years(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def _span(years: list[int]) -> str:
    return f"{years[0]}-{years[-1]}"


def run_job(args: argparse.Namespace) -> int:
    kind, subject = args.job
    train_args = shlex.split(args.train_args)
    with tempfile.TemporaryDirectory() as scratch:
        if kind == "per-ticker":
            result = per_ticker(
                subject, args.years, Path(scratch), train_args, not args.pooled_only
            )
        else:
            result = pooled(args.tickers, int(subject), Path(scratch), train_args)
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--job", nargs=2, metavar=("KIND", "SUBJECT"), help=argparse.SUPPRESS)
    parser.add_argument("--tickers", nargs="+", help="stocks (default: every one in the data)")
    parser.add_argument(
        "--years",
        type=_years,
        default=YEARS,
        metavar="FIRST-LAST",
        help=f"test years (default {_span(YEARS)}); earlier ones choose designs without a test year",
    )
    parser.add_argument("--jobs", type=int, default=2, help="jobs at once (default 2)")
    parser.add_argument(
        "--train-args",
        default="--threads 1",
        help="petr4-train flags for both recipes, such as '--calibration per-ticker' "
        "(default '--threads 1': one core per job)",
    )
    parser.add_argument("--pooled-only", action="store_true", help="skip per-ticker networks")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(
            f"bench-accuracy: skipped: real prices not found at {DATA} (they live beside the project)"
        )
        return 0
    args.tickers = args.tickers or stocks()
    if args.job:
        return run_job(args)

    started = time.perf_counter()
    common = ["--years", _span(args.years), "--train-args", args.train_args]
    baselines = common + (["--pooled-only"] if args.pooled_only else [])
    jobs = [["pooled", str(y), "--tickers", *args.tickers, *common] for y in args.years]
    jobs += [["per-ticker", t, *baselines] for t in args.tickers]
    print(
        f"bench-accuracy: {len(args.tickers)} stocks, {_span(args.years)}: {len(jobs)} jobs, "
        f"{args.jobs} at a time ...",
        flush=True,
    )
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(measured, jobs))
    failed = [r["failed"] for r in done if "failed" in r]
    pooled_years = [r for r in done[: len(args.years)] if "failed" not in r]
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "failed_jobs": failed,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "years": _span(args.years),
        "train_args": args.train_args,
        "jobs": args.jobs,
        "pooled": {r["year"]: r for r in pooled_years},
        "tickers": dict(zip(args.tickers, done[len(args.years) :], strict=True)),
        "wall_seconds": time.perf_counter() - started,
    }
    forecasts = merge(results)
    summary = summarize(forecasts, args.years == YEARS)
    REPORTS.mkdir(parents=True, exist_ok=True)
    forecasts.to_csv(REPORTS / "accuracy_forecasts.csv", index=False)
    for result in [*results["tickers"].values(), *results["pooled"].values()]:
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


def merge(results: dict) -> pd.DataFrame:
    """One row per stock and anchor day: every forecaster's quantiles side by side."""
    frames = [
        pd.DataFrame(r["forecasts"]).assign(ticker=t)
        for t, r in results["tickers"].items()
        if r["forecasts"]  # a stock whose history starts after the years has none
    ]
    record = pd.concat(frames, ignore_index=True)
    pooled_rows = [
        pd.DataFrame(f).assign(ticker=t)
        for r in results["pooled"].values()
        for t, f in r["forecasts"].items()
    ]
    if pooled_rows:
        record = record.merge(
            pd.concat(pooled_rows, ignore_index=True), on=["ticker", "anchor_date"], how="left"
        )
    return record


if __name__ == "__main__":
    sys.exit(main())
