"""make bench-scale: what the system costs as the universe grows, 1, 4, 16 and 42 stocks.

On the real prices in ``../shared/data``, against a real MLflow server (SQLite, as the demo
runs it), with the console scripts as users run them:

- ingestion: one ``petr4-ingest`` of the N stocks into an empty experiment;
- training: ``petr4-train --ticker`` of each stock (``--train-args``, by default the short
  recipe ``--folds 1 --max-epochs 2``: what is measured is the cost of a training per process
  and per MLflow run, not of learning, which bench-accuracy measures; a stock too young for
  the folds asked for falls back to ``--folds 1``), summed over the first N; and one pooled
  ``petr4-train --tickers`` of the N stocks; wall seconds and peak memory of each;
- the predictor serving the N stocks, from their per-ticker versions and from the pooled
  one: seconds from start to SERVING (the median of alternated starts), resident memory
  and threads once serving, MLflow requests per refresh while nothing changes, and Forecast
  p50 from the latest prices.

Writes bench/reports/scale.{md,json} and scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.serving import rss_mb
from scripts.harness.faults import CountingProxy
from scripts.harness.processes import BIN, QUIET_MLFLOW, MlflowServer, PredictorProcess
from scripts.harness.settings import DevSettings
from services.client.client import ForecastClient

ROOT = Path(__file__).resolve().parents[1]
DATA = DevSettings().shared_dir / "data"  # PETR4_DEV_SHARED_DIR moves it
REPORTS = ROOT / "bench" / "reports"
SIZES = (1, 4, 16, 42)
STARTS = 3  # alternated starts per predictor case
FORECASTS = 2000
SHORT_RECIPE = "--folds 1 --max-epochs 2"
TARGETS = {"serving_ratio": 3.0, "per_ticker_mib": 3.0, "requests": 5, "p50_ratio": 1.1}


def universe() -> list[str]:
    """The stocks, longest histories first (PETR4.SA first): the small universes are the
    ones a user starts with, the young stocks come last."""
    stocks = [p.stem for p in DATA.glob("*.SA.csv")]
    first = {t: (DATA / f"{t}.csv").read_text().split("\n", 2)[1][:10] for t in stocks}
    return sorted(stocks, key=lambda t: (t != "PETR4.SA", first[t], t))


def run_measured(args: list[str], env: dict) -> dict:
    """A console script as a user runs it: its wall seconds, its peak memory (from wait4 on
    its pid), its exit code and the end of its output."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(BIN / args[0]), *args[1:]],
        env={**os.environ, **QUIET_MLFLOW, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    return {
        "seconds": time.perf_counter() - started,
        "peak_mb": usage.ru_maxrss / 1024,
        "code": os.waitstatus_to_exitcode(status),
        "output": output[-4000:],
    }


def ingest(tickers: list[str], env: dict, experiment: str) -> dict:
    return run_measured(
        [
            "petr4-ingest",
            "--tickers",
            *tickers,
            "--experiment",
            experiment,
            "--source",
            f"csv:{DATA}/{{ticker}}.csv",
        ],
        env,
    )


def train_each(tickers: list[str], env: dict, prices: str, extra: list[str]) -> dict[str, dict]:
    """Every stock's own training, one after the other, each registered as version 1."""
    trained = {}
    for ticker in tickers:
        common = ["--prices-experiment", prices, "--experiment", "scale-per-ticker", *extra]
        result = run_measured(["petr4-train", "--ticker", ticker, *common], env)
        if result["code"] == 2 and "folds of" in result["output"]:  # too young for three folds
            result = run_measured(["petr4-train", "--ticker", ticker, "--folds", "1", *common], env)
            result["folds"] = 1
        print(f"bench-scale: {ticker}: {result['seconds']:.0f} s", flush=True)
        trained[ticker] = {k: v for k, v in result.items() if k != "output"}
        if result["code"] != 0:
            raise SystemExit(f"bench-scale: training {ticker} failed: {result['output']}")
    return trained


def serving(tickers: list[str], env: dict, prices: str, version: str, root: Path) -> dict:
    """Start to SERVING (median of alternated starts, the artifact cache warm after the
    first), memory and threads once serving, and Forecast p50 from the latest prices."""
    seconds, process = [], None
    for n in range(STARTS):
        process = PredictorProcess(
            root / f"start-{n}",
            env,
            *("--tickers", *tickers, "--prices-experiment", prices, "--model-version", version),
        )
        (root / f"start-{n}").mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        process.start().wait_serving(600)
        seconds.append(time.perf_counter() - started)
        if n < STARTS - 1:
            process.stop()
    try:
        with ForecastClient(process.target) as client:
            for ticker in tickers:  # every state warm
                client.forecast(ticker)
            latencies = []
            for i in range(FORECASTS):
                begun = time.perf_counter()
                client.forecast(tickers[i % len(tickers)])
                latencies.append(time.perf_counter() - begun)
        status = Path(f"/proc/{process.process.pid}/status").read_text()
        threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
        return {
            "start_seconds": seconds,
            "start_median": statistics.median(seconds),
            "rss_mb": rss_mb(process.process.pid),
            "threads": threads,
            "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        }
    finally:
        process.stop()


def requests_per_refresh(
    tickers: list[str], proxy: CountingProxy, prices: str, root: Path
) -> float:
    """MLflow requests of one refresh while nothing changes: over ten refreshes, alias mode."""
    root.mkdir(parents=True, exist_ok=True)
    refresh = 1.0
    process = PredictorProcess(
        root,
        {"MLFLOW_TRACKING_URI": proxy.uri},
        *("--tickers", *tickers, "--prices-experiment", prices),
        *("--refresh-seconds", str(refresh)),
    )
    try:
        process.start().wait_serving(600)
        time.sleep(refresh * 1.5)  # past the first refresh, which may still fetch
        before, started = proxy.requests, time.monotonic()
        time.sleep(refresh * 10)
        elapsed = time.monotonic() - started
        return (proxy.requests - before) / (elapsed / refresh)
    finally:
        process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--train-args", default=SHORT_RECIPE, help="petr4-train flags for every training"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        print(
            f"bench-scale: skipped: real prices not found at {DATA} (they live beside the project)"
        )
        return 0
    stocks = universe()[: max(args.sizes)]
    sizes = [n for n in args.sizes if n <= len(stocks)]
    extra = args.train_args.split()
    results: dict = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "sizes": sizes,
        "stocks": stocks,
        "train_args": args.train_args,
    }
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "mlflow").mkdir()
        server = MlflowServer(root / "mlflow").start()
        proxy = CountingProxy(server.port)
        env = {"MLFLOW_TRACKING_URI": server.uri}
        try:
            print("bench-scale: ingestion ...", flush=True)
            results["ingest"] = {n: ingest(stocks[:n], env, f"scale-ingest-{n}") for n in sizes}
            prices = f"scale-ingest-{max(sizes)}"
            print("bench-scale: per-ticker trainings ...", flush=True)
            results["per_ticker"] = train_each(
                stocks, env, prices, [*extra, "--champion-tolerance", "1"]
            )
            results["pooled"] = {}
            for n in sizes[1:]:
                print(f"bench-scale: pooled training of {n} ...", flush=True)
                register = ["--champion-tolerance", "1"] if n == max(sizes) else ["--no-register"]
                result = run_measured(
                    [
                        "petr4-train",
                        "--tickers",
                        *stocks[:n],
                        "--prices-experiment",
                        prices,
                        "--experiment",
                        "scale-pooled",
                        *extra,
                        *register,
                    ],
                    env,
                )
                if result["code"] != 0:
                    raise SystemExit(f"bench-scale: pooled training failed: {result['output']}")
                results["pooled"][n] = {k: v for k, v in result.items() if k != "output"}
            results["serving"] = {}
            for n in sizes:
                print(f"bench-scale: serving {n} ...", flush=True)
                cases = {"per ticker": "1"} | ({"pooled": "2"} if n > 1 and max(sizes) > 1 else {})
                results["serving"][n] = {
                    case: serving(stocks[:n], env, prices, version, root / f"serve-{n}-{version}")
                    for case, version in cases.items()
                }
                results["serving"][n]["mlflow_requests_per_refresh"] = requests_per_refresh(
                    stocks[:n], proxy, prices, root / f"refresh-{n}"
                )
        finally:
            proxy.close()
            server.stop()
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "scale.json").write_text(json.dumps(results, indent=2, default=str))
    report = markdown(results)
    (REPORTS / "scale.md").write_text(report)
    plot(results, REPORTS / "scale.png")
    print(report)
    return 0


def per_ticker_seconds(results: dict, n: int) -> float:
    return sum(results["per_ticker"][t]["seconds"] for t in results["stocks"][:n])


def markdown(results: dict) -> str:
    sizes, serving = results["sizes"], results["serving"]
    one = serving[sizes[0]]["per ticker"]
    lines = [
        f"# The universe's cost, {', '.join(map(str, sizes))} stocks",
        "",
        f"Measured {results['measured_at']} on {results['machine']} by `make bench-scale`; "
        "MLflow on SQLite, the console scripts as users run them, real prices; every "
        f"training with `petr4-train {results['train_args'] or '(the default recipe)'}`.",
        "",
        "| stocks | ingest s | per-ticker trainings s (sum) | pooled training s | pooled peak MB "
        "| SERVING s per ticker / pooled | RSS MiB per ticker / pooled | threads per ticker / pooled "
        "| MLflow requests per refresh | Forecast p50 ms per ticker / pooled |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in sizes:
        s = serving[n]
        own, pooled = s["per ticker"], s.get("pooled")
        training = results["pooled"].get(n)

        def both(key, fmt, own=own, pooled=pooled):
            value = own[key] if not isinstance(key, tuple) else own[key[0]][key[1]]
            other = (
                ""
                if pooled is None
                else (pooled[key] if not isinstance(key, tuple) else pooled[key[0]][key[1]])
            )
            return format(value, fmt) + ("" if pooled is None else f" / {format(other, fmt)}")

        lines.append(
            f"| {n} | {results['ingest'][n]['seconds']:.1f} | {per_ticker_seconds(results, n):.0f} | "
            f"{'–' if training is None else format(training['seconds'], '.0f')} | "
            f"{'–' if training is None else format(training['peak_mb'], '.0f')} | "
            f"{both('start_median', '.2f')} | {both(('rss_mb', 'VmRSS'), '.0f')} | "
            f"{both('threads', 'd')} | {s['mlflow_requests_per_refresh']:.1f} | {both('p50_ms', '.3f')} |"
        )
    big = serving[sizes[-1]]
    n = sizes[-1]
    checks = [
        (
            f"{n} stocks SERVING within {TARGETS['serving_ratio']:g}x one's",
            big["per ticker"]["start_median"] / one["start_median"],
            TARGETS["serving_ratio"],
        ),
        (
            f"memory per stock, per-ticker models (<= {TARGETS['per_ticker_mib']:g} MiB)",
            (big["per ticker"]["rss_mb"]["VmRSS"] - one["rss_mb"]["VmRSS"]) / max(n - 1, 1),
            TARGETS["per_ticker_mib"],
        ),
        (
            f"MLflow requests per refresh with {n} stocks (<= {TARGETS['requests']}, as with one)",
            big["mlflow_requests_per_refresh"],
            TARGETS["requests"],
        ),
        (
            f"Forecast p50 with {n} stocks within {TARGETS['p50_ratio']:g}x one's",
            big["per ticker"]["p50_ms"] / one["p50_ms"],
            TARGETS["p50_ratio"],
        ),
    ]
    if "pooled" in big:
        checks.insert(
            2,
            (
                "memory per stock, one pooled model (next to nothing)",
                (big["pooled"]["rss_mb"]["VmRSS"] - one["rss_mb"]["VmRSS"]) / max(n - 1, 1),
                TARGETS["per_ticker_mib"],
            ),
        )
    lines += ["", "| check | measured | target | verdict |", "| --- | ---: | ---: | --- |"]
    for label, value, target in checks:
        lines.append(
            f"| {label} | {value:.2f} | {target:g} | {'met' if value <= target else 'NOT met'} |"
        )
    if n in results["pooled"]:
        ratio = results["pooled"][n]["seconds"] / per_ticker_seconds(results, n)
        lines += [
            "",
            f"The pooled training of the {n} stocks took {ratio:.2f} of the time of their "
            f"{n} per-ticker trainings ({results['pooled'][n]['seconds'] / 60:.1f} against "
            f"{per_ticker_seconds(results, n) / 60:.1f} minutes) and peaked at "
            f"{results['pooled'][n]['peak_mb']:.0f} MB.",
        ]
    young = [t for t, r in results["per_ticker"].items() if r.get("folds") == 1]
    if young:
        lines.append(
            f"\n{len(young)} stocks have too little history for three folds of their own and were "
            f"trained per ticker with one: {', '.join(young)}."
        )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes, serving = results["sizes"], results["serving"]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [
        (
            "training seconds",
            [per_ticker_seconds(results, n) for n in sizes],
            [results["pooled"].get(n, {}).get("seconds", np.nan) for n in sizes],
        ),
        (
            "seconds to SERVING",
            [serving[n]["per ticker"]["start_median"] for n in sizes],
            [serving[n].get("pooled", {}).get("start_median", np.nan) for n in sizes],
        ),
        (
            "resident MiB",
            [serving[n]["per ticker"]["rss_mb"]["VmRSS"] for n in sizes],
            [serving[n].get("pooled", {}).get("rss_mb", {}).get("VmRSS", np.nan) for n in sizes],
        ),
        (
            "MLflow requests per refresh",
            [serving[n]["mlflow_requests_per_refresh"] for n in sizes],
            None,
        ),
    ]
    for axis, (title, own, pooled) in zip(axes, panels, strict=True):
        axis.plot(sizes, own, marker="o", label="per-ticker models")
        if pooled is not None:
            axis.plot(sizes, pooled, marker="s", label="one pooled model")
        axis.set_title(title)
        axis.set_xlabel("stocks")
        axis.set_xticks(sizes)
        axis.set_ylim(bottom=0)  # from zero: a flat cost must look flat
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
