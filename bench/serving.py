"""make bench-serving: the predictor against the floor of Python gRPC, in one run.

Both servers are measured by the same client: sequential latency (p50, p99) over 5000
calls, throughput with 8 concurrent callers, and resident memory. The predictor's
start-up time to SERVING is measured with a cold and a warm artifact cache. Writes
bench/reports/serving.md and serving.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from services.client.client import ForecastClient, bars_from_frame
from tests.helpers import BIN, MlflowServer, PredictorProcess, free_port, run_cli, wait_until

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
REPORTS = ROOT / "bench" / "reports"
TICKER = "PETR4.SA"
SEQUENTIAL_CALLS = 5000
CALLERS = 8
CALLS_PER_CALLER = 1000
STARTS = 3


def rss_mb(pid: int) -> dict[str, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    # Resident memory, its peak, and its split: the process's own (anonymous) pages and the
    # file-backed ones, mostly shared libraries' code that other processes share too.
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    return {key: int(fields[key].split()[0]) / 1024 for key in keys}


def sequential(target: str, calls: int, history=None) -> dict[str, float]:
    with ForecastClient(target) as client:
        for _ in range(200):  # warm-up: channel, caches, branch predictors
            client.forecast(TICKER, history)
        latencies = np.empty(calls)
        for i in range(calls):
            started = time.perf_counter()
            client.forecast(TICKER, history)
            latencies[i] = time.perf_counter() - started
    return {
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "mean_ms": float(latencies.mean() * 1e3),
    }


def throughput(target: str) -> float:
    barrier = threading.Barrier(CALLERS + 1)

    def caller():
        with ForecastClient(target) as client:
            client.forecast(TICKER)
            barrier.wait()
            for _ in range(CALLS_PER_CALLER):
                client.forecast(TICKER)

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return CALLERS * CALLS_PER_CALLER / (time.perf_counter() - started)


def time_to_serving(root: Path, env: dict, cache: Path) -> float:
    process = PredictorProcess(root, env, "--tickers", TICKER)
    process.args[process.args.index("--cache-dir") + 1] = str(cache)
    started = time.perf_counter()
    process.start()
    try:
        wait_until(lambda: process.health() == "SERVING", 120, "SERVING", interval=0.02)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.stop()


def main() -> int:
    results: dict = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        mlflow = MlflowServer(root).start()
        env = {"MLFLOW_TRACKING_URI": mlflow.uri}
        try:
            source = f"csv:{DATA}/{{ticker}}.csv" if DATA.is_dir() else "synthetic"
            results["prices"] = "real PETR4.SA" if DATA.is_dir() else "synthetic series"
            for args in (
                ["petr4-ingest", "--tickers", TICKER, "--source", source],
                [
                    "petr4-train",
                    "--ticker",
                    TICKER,
                    "--max-epochs",
                    "2",
                    "--no-progress-bar",
                    "--champion-tolerance",
                    "1",
                    "--work-dir",
                    str(root / "train"),
                ],
            ):
                done = run_cli(args, env)
                if done.returncode != 0:
                    raise SystemExit(f"bench-serving: {args[0]} failed: {done.stderr[-2000:]}")

            print("bench-serving: start-up times ...", flush=True)
            cold = [time_to_serving(root, env, root / f"cold-{i}") for i in range(STARTS)]
            warm_cache = root / "warm"
            time_to_serving(root, env, warm_cache)  # fills it
            warm = [time_to_serving(root, env, warm_cache) for _ in range(STARTS)]
            results["startup_seconds"] = {
                "cold_median": statistics.median(cold),
                "warm_median": statistics.median(warm),
                "cold": cold,
                "warm": warm,
            }

            print("bench-serving: the floor ...", flush=True)
            port = free_port()
            floor = subprocess.Popen(
                [str(BIN / "python"), "-m", "bench.floor_server", "--port", str(port)], cwd=ROOT
            )
            target = f"127.0.0.1:{port}"
            try:
                wait_until(lambda: _answers(target), 30, "the floor server")
                results["floor"] = sequential(target, SEQUENTIAL_CALLS)
                results["floor"]["throughput_rps"] = throughput(target)
                results["floor"]["memory_mb"] = rss_mb(floor.pid)
            finally:
                floor.terminate()
                floor.wait()

            print("bench-serving: the predictor ...", flush=True)
            predictor = PredictorProcess(root, env, "--tickers", TICKER).start().wait_serving()
            try:
                results["predictor"] = sequential(predictor.target, SEQUENTIAL_CALLS)
                results["predictor"]["throughput_rps"] = throughput(predictor.target)
                from services.core.prices import read_price_csv
                from services.ingestion.sources import SyntheticSource

                prices = (
                    read_price_csv(DATA / f"{TICKER}.csv")
                    if DATA.is_dir()
                    else SyntheticSource(end=date(2024, 12, 30)).fetch(TICKER, None)
                )
                history = bars_from_frame(prices[prices["Volume"] > 0].iloc[-250:])
                results["predictor_with_history"] = sequential(predictor.target, 1000, history)
                results["predictor"]["memory_mb"] = rss_mb(predictor.process.pid)
            finally:
                predictor.terminate()
                predictor.stop()
        finally:
            mlflow.stop()

    floor, served = results["floor"], results["predictor"]
    results["ratios"] = {
        "p50_latency": served["p50_ms"] / floor["p50_ms"],
        "throughput": served["throughput_rps"] / floor["throughput_rps"],
    }
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "serving.json").write_text(json.dumps(results, indent=2))
    report = markdown(results)
    (REPORTS / "serving.md").write_text(report)
    print(report)
    return 0


def _answers(target: str) -> bool:
    try:
        with ForecastClient(target, timeout=1) as client:
            client.forecast(TICKER)
            return True
    except Exception:
        return False


def markdown(r: dict) -> str:
    floor, served, history, startup = (
        r["floor"],
        r["predictor"],
        r["predictor_with_history"],
        r["startup_seconds"],
    )
    return "\n".join(
        [
            "# Serving: the predictor against the floor of Python gRPC",
            "",
            f"Measured {r['measured_at']} on {r['machine']} by `make bench-serving` ({r['prices']}); one run,",
            f"the same client for both. Sequential: {SEQUENTIAL_CALLS} calls after 200 of warm-up. Throughput:",
            f"{CALLERS} concurrent callers x {CALLS_PER_CALLER} calls. Client and server share the 2 cores.",
            "",
            "| server | p50 ms | p99 ms | throughput rps | RSS MB | peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| floor (constant answer) | {floor['p50_ms']:.3f} | {floor['p99_ms']:.3f} | {floor['throughput_rps']:.0f} | "
            f"{floor['memory_mb']['VmRSS']:.0f} | {floor['memory_mb']['VmHWM']:.0f} |",
            f"| predictor, latest prices | {served['p50_ms']:.3f} | {served['p99_ms']:.3f} | "
            f"{served['throughput_rps']:.0f} | {served['memory_mb']['VmRSS']:.0f} | {served['memory_mb']['VmHWM']:.0f} |",
            f"| predictor, 250 explicit bars | {history['p50_ms']:.3f} | {history['p99_ms']:.3f} | – | – | – |",
            "",
            f"Ratios (predictor / floor): p50 latency {r['ratios']['p50_latency']:.2f} (target <= 1.5), "
            f"throughput {r['ratios']['throughput']:.2f} (target >= 0.7).",
            "",
            f"Start-up to SERVING, median of {STARTS}: cold artifact cache {startup['cold_median']:.2f} s, "
            f"warm cache {startup['warm_median']:.2f} s (target <= 3 s).",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
