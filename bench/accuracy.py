"""make bench-accuracy: the model against the baselines on real prices, test year 2024.

For each ticker: a default training of the product (through the same code as
petr4-train, into a throw-away MLflow store), and the seed recipe, each in its own
process so its wall time and peak memory are its own. Writes bench/reports/accuracy.md
and accuracy.json.
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
from datetime import UTC, date, datetime
from pathlib import Path

from scripts.harness.settings import DevSettings

ROOT = Path(__file__).resolve().parents[1]
DATA = DevSettings().shared_dir / "data"  # PETR4_DEV_SHARED_DIR moves it
REPORTS = ROOT / "bench" / "reports"
TICKERS = ("PETR4.SA", "VALE3.SA", "ITUB4.SA", "BBDC4.SA")
TEST_START = date(2024, 1, 1)


def run_one(kind: str, ticker: str) -> dict:
    """Train one model in this process and return its metrics (called in a child process)."""
    import pandas as pd

    from services.core.logging import configure_logging
    from services.core.prices import read_price_csv, validate_prices

    configure_logging("WARNING")
    csv = DATA / f"{ticker}.csv"
    if kind == "product":
        import mlflow

        from trainer.settings import TrainSettings
        from trainer.train import train

        with tempfile.TemporaryDirectory() as store:
            mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
            os.environ["MLFLOW_ARTIFACT_ROOT"] = store
            settings = TrainSettings(
                ticker=ticker,
                data=csv,
                test_start=TEST_START,
                register_model=False,
                progress_bar=False,
                work_dir=Path(store) / "work",
                experiment=f"bench-{ticker}",
            )
            result = train(settings)
        return {"rows": result.metrics, "fit_seconds": result.timings["fit_seconds"]}

    from bench.seed_recipe import seed_forecasts
    from trainer.evaluate import evaluate

    prices, _ = validate_prices(read_price_csv(csv), ticker)
    forecasts = seed_forecasts(prices, pd.Timestamp(TEST_START))
    forecasts = forecasts.iloc[:252]
    actual = prices["Close"].shift(-1).reindex(forecasts.index).to_numpy()
    rows = evaluate(prices, forecasts.index, actual, {"seed recipe": forecasts.to_numpy()[:, None]})
    return {"rows": {"seed recipe": rows["seed recipe"]}}


def measured(kind: str, ticker: str) -> dict:
    """Run one training in a child process; its wall time and peak RSS are its own."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.accuracy", "--one", kind, ticker],
        cwd=ROOT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.PIPE,
        text=True,
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {kind} training of {ticker} failed")
    result = json.loads(output.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def fmt(value, spec: str) -> str:
    return "–" if value is None or value != value else format(value, spec)


def markdown(results: dict) -> str:
    lines = [
        f"# Accuracy on real prices, test year {TEST_START.year}",
        "",
        f"Measured {results['measured_at']} on {results['machine']} by `make bench-accuracy`. Every forecaster is",
        "scored on the same test days (targets in 2024). `lstm` is the product as `petr4-train` ships it;",
        "`lstm, unshrunk` is the same network without the validation-gated shrinkage towards naive.",
        "",
        "| ticker | forecaster | MAE R$ | RMSE R$ | MAPE % | MAE / naive | direction | 80 % coverage | width R$ | wall s | peak MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ticker, entry in results["tickers"].items():
        for name, row in entry["rows"].items():
            cost = entry["cost"].get(name, {})
            lines.append(
                f"| {ticker} | {name} | {fmt(row['mae_brl'], '.4f')} | {fmt(row['rmse_brl'], '.4f')} | "
                f"{fmt(row['mape_pct'], '.3f')} | {fmt(row['mae_ratio_naive'], '.4f')} | "
                f"{fmt(row['directional_accuracy'], '.1%')} | {fmt(row.get('coverage'), '.1%')} | "
                f"{fmt(row.get('interval_width_brl'), '.3f')} | {fmt(cost.get('wall_seconds'), '.0f')} | "
                f"{fmt(cost.get('peak_rss_mb'), '.0f')} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--one", nargs=2, metavar=("KIND", "TICKER"), help=argparse.SUPPRESS)
    parser.add_argument("--tickers", nargs="+", default=list(TICKERS))
    parser.add_argument(
        "--no-seed", action="store_true", help="skip the seed recipe (it trains 50 epochs)"
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return 0
    if not DATA.is_dir():
        print(
            f"bench-accuracy: skipped: real prices not found at {DATA} (they live beside the project)"
        )
        return 0

    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "test_start": TEST_START.isoformat(),
        "tickers": {},
    }
    for ticker in args.tickers:
        print(f"bench-accuracy: {ticker}: training the product ...", flush=True)
        product = measured("product", ticker)
        rows = product["rows"]
        cost = {"lstm": {k: product[k] for k in ("wall_seconds", "peak_rss_mb", "fit_seconds")}}
        if not args.no_seed:
            print(f"bench-accuracy: {ticker}: training the seed recipe ...", flush=True)
            seed = measured("seed", ticker)
            rows = rows | seed["rows"]
            cost["seed recipe"] = {k: seed[k] for k in ("wall_seconds", "peak_rss_mb")}
        results["tickers"][ticker] = {"rows": rows, "cost": cost}

    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "accuracy.json").write_text(json.dumps(results, indent=2))
    report = markdown(results)
    (REPORTS / "accuracy.md").write_text(report)
    print(report)
    print(f"written: {REPORTS / 'accuracy.md'}, {REPORTS / 'accuracy.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
