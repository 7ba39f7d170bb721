"""make bench-serving: the predictor against the floor of Python gRPC, in one run.

Every case is measured on both servers by the same client: the predictor, and a server that
answers a constant (the floor: the same service and thread pool, no work). The cases are a
forecast from the latest prices and forecasts from explicit history of 120 bars (a window of
60 plus 60 of warm-up), 200 and 1,000; the floor receives the very same requests. For each:
sequential latency (p50, p99) and throughput with 8 concurrent callers. Also the predictor's
start-up time to SERVING with a cold and a warm artifact cache, and resident memory. And the
same cases against the predictor as the chart runs it, over TLS with a bearer token: what
security costs. And 200 bars that run past a predictor's snapshot by one day and by twenty,
whose closes the interval's widening is replayed over. Writes bench/reports/serving.md and
serving.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from scripts.harness.certs import Authority
from scripts.harness.processes import (
    BIN,
    MlflowServer,
    PredictorProcess,
    free_port,
    run_cli,
    wait_until,
)
from scripts.harness.settings import DevSettings
from services.client.client import ForecastClient, Tls, bars_from_frame

ROOT = Path(__file__).resolve().parents[1]
DATA = DevSettings().shared_dir / "data"  # PETR4_DEV_SHARED_DIR moves it
REPORTS = ROOT / "bench" / "reports"
TICKER = "PETR4.SA"
CASES = {"latest prices": 0, "120 bars": 120, "200 bars": 200, "1,000 bars": 1000}
SEQUENTIAL_CALLS = {0: 5000, 120: 3000, 200: 3000, 1000: 1000}
CALLERS = 8
CALLS_PER_CALLER = 500
STARTS = 3
BEHIND = {"200 bars, 1 day past the snapshot": 1, "200 bars, 20 days past it": 20}
# The targets, with 200 bars and from the latest prices.
TARGETS = {"200 bars": (2.0, 0.5), "latest prices": (1.5, None)}


def rss_mb(pid: int) -> dict[str, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    # Resident memory, its peak, and its split: the process's own (anonymous) pages and the
    # file-backed ones, mostly shared libraries' code that other processes share too.
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    return {key: int(fields[key].split()[0]) / 1024 for key in keys}


def sequential(target: str, calls: int, history, **client_options) -> dict[str, float]:
    with ForecastClient(target, **client_options) as client:
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
    }


def throughput(target: str, history, **client_options) -> float:
    barrier = threading.Barrier(CALLERS + 1)

    def caller():
        with ForecastClient(target, **client_options) as client:
            client.forecast(TICKER, history)
            barrier.wait()
            for _ in range(CALLS_PER_CALLER):
                client.forecast(TICKER, history)

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return CALLERS * CALLS_PER_CALLER / (time.perf_counter() - started)


def measure(target: str, histories: dict, **client_options) -> dict[str, dict]:
    """Every case; ``client_options`` go to each ForecastClient (TLS, a token)."""
    found = {}
    for case, bars in CASES.items():
        history = histories[bars]
        found[case] = sequential(target, SEQUENTIAL_CALLS[bars], history, **client_options)
        found[case]["throughput_rps"] = throughput(target, history, **client_options)
    return found


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
    from services.core.prices import read_price_csv
    from services.ingestion.sources import SyntheticSource

    prices = (
        read_price_csv(DATA / f"{TICKER}.csv")
        if DATA.is_dir()
        else SyntheticSource(end=date(2024, 12, 30)).fetch(TICKER, None)
    )
    traded = prices[prices["Volume"] > 0]
    histories = {
        bars: bars_from_frame(traded.iloc[-bars:]) if bars else None for bars in CASES.values()
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
                    *("petr4-train", "--ticker", TICKER, "--max-epochs", "2", "--no-progress-bar"),
                    *("--champion-tolerance", "1", "--work-dir", str(root / "train")),
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
            try:
                target = f"127.0.0.1:{port}"
                wait_until(lambda: _answers(target), 30, "the floor server")
                results["floor"] = measure(target, histories)
                results["floor_memory_mb"] = rss_mb(floor.pid)
            finally:
                floor.terminate()
                floor.wait()

            print("bench-serving: the predictor ...", flush=True)
            predictor = PredictorProcess(root, env, "--tickers", TICKER).start().wait_serving()
            try:
                results["predictor"] = measure(predictor.target, histories)
                results["predictor_memory_mb"] = rss_mb(predictor.process.pid)
            finally:
                predictor.terminate()
                predictor.stop()

            print("bench-serving: the predictor over TLS, with a token ...", flush=True)
            ca = Authority.create(root / "tls")
            server = ca.sign("server")
            (root / "tokens").write_text("bench-serving-token\n")
            secured = PredictorProcess(
                root,
                env,
                *("--tickers", TICKER, "--token-file", str(root / "tokens")),
                *("--tls-cert-file", str(server.cert), "--tls-key-file", str(server.key)),
                health_port=0,
            )
            secured.start().wait_serving()
            try:
                options = {"tls": Tls(ca.cert), "token": "bench-serving-token"}
                target = secured.target.replace("127.0.0.1", "localhost")  # the certificate's name
                results["secured"] = measure(target, histories, **options)
            finally:
                secured.terminate()
                secured.stop()

            print("bench-serving: requests past the predictor's snapshot ...", flush=True)
            results["past_snapshot"] = past_snapshot(root, env, prices, traded)
        finally:
            mlflow.stop()

    results["ratios"] = {
        case: {
            "p50": results["predictor"][case]["p50_ms"] / results["floor"][case]["p50_ms"],
            "throughput": results["predictor"][case]["throughput_rps"]
            / results["floor"][case]["throughput_rps"],
        }
        for case in CASES
    }
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "serving.json").write_text(json.dumps(results, indent=2))
    report = markdown(results)
    (REPORTS / "serving.md").write_text(report)
    print(report)
    return 0


def past_snapshot(root: Path, env: dict, prices, traded) -> dict[str, dict]:
    """200-bar requests that run past the predictor's snapshot, which stops
    ``max(BEHIND)`` trading days before the last bar."""
    last = max(BEHIND.values())
    csv = root / "behind.csv"
    prices.loc[: traded.index[-last - 1]].to_csv(csv)
    ingest = ["petr4-ingest", "--tickers", TICKER, "--experiment", "prices-behind"]
    done = run_cli([*ingest, "--source", f"csv:{csv}"], env)
    if done.returncode != 0:
        raise SystemExit(f"bench-serving: petr4-ingest failed: {done.stderr[-2000:]}")
    predictor = PredictorProcess(
        root, env, "--tickers", TICKER, "--prices-experiment", "prices-behind"
    ).start()
    try:
        predictor.wait_serving()
        found = {}
        for case, days in BEHIND.items():
            end = len(traded) - last + days  # the request's last bar: ``days`` past the snapshot
            history = bars_from_frame(traded.iloc[end - 200 : end])
            found[case] = sequential(predictor.target, SEQUENTIAL_CALLS[200], history)
        return found
    finally:
        predictor.terminate()
        predictor.stop()


def _answers(target: str) -> bool:
    try:
        with ForecastClient(target, timeout=1) as client:
            client.forecast(TICKER)
            return True
    except Exception:
        return False


def markdown(r: dict) -> str:
    lines = [
        "# Serving: the predictor against the floor of Python gRPC",
        "",
        f"Measured {r['measured_at']} on {r['machine']} by `make bench-serving` ({r['prices']}); one run,",
        "one client for both servers, which receive the very same requests. Sequential: p50 and p99",
        f"after 200 calls of warm-up. Throughput: {CALLERS} concurrent callers x {CALLS_PER_CALLER} calls.",
        "Client and server share the machine's 2 cores.",
        "",
        "| request | floor p50 ms | predictor p50 ms | p50 ratio | floor p99 ms | predictor p99 ms "
        "| floor rps | predictor rps | rps ratio | TLS + token p50 ms | TLS + token rps |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in CASES:
        floor, served, ratio = r["floor"][case], r["predictor"][case], r["ratios"][case]
        secured = r["secured"][case]
        lines.append(
            f"| {case} | {floor['p50_ms']:.3f} | {served['p50_ms']:.3f} | {ratio['p50']:.2f} | "
            f"{floor['p99_ms']:.3f} | {served['p99_ms']:.3f} | {floor['throughput_rps']:.0f} | "
            f"{served['throughput_rps']:.0f} | {ratio['throughput']:.2f} | "
            f"{secured['p50_ms']:.3f} | {secured['throughput_rps']:.0f} |"
        )
    targets = []
    for case, (p50, rps) in TARGETS.items():
        ratio = r["ratios"][case]
        met = ratio["p50"] <= p50 and (rps is None or ratio["throughput"] >= rps)
        goal = f"p50 <= {p50}x" + (f", throughput >= {rps}x" if rps else "")
        targets.append(f"{case}: {goal} the floor's: {'met' if met else 'NOT met'}")
    startup, memory = r["startup_seconds"], r["predictor_memory_mb"]
    lines += [
        "",
        "Targets: " + "; ".join(targets) + ".",
        "",
        f"Start-up to SERVING, median of {STARTS}: cold artifact cache {startup['cold_median']:.2f} s, "
        f"warm cache {startup['warm_median']:.2f} s.",
        "Requests past the snapshot (the widening replayed over their later closes), p50: "
        + "; ".join(f"{case} {r['past_snapshot'][case]['p50_ms']:.3f} ms" for case in BEHIND)
        + f" (200 bars within it: {r['predictor']['200 bars']['p50_ms']:.3f} ms).",
        f"Predictor memory after the run: {memory['VmRSS']:.0f} MB resident ({memory['RssAnon']:.0f} "
        f"MB its own, {memory['RssFile']:.0f} MB mapped files); the floor's "
        f"{r['floor_memory_mb']['VmRSS']:.0f} MB.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
