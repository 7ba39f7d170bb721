"""make bench-containers: the images' sizes, and the predictor as the chart runs it.

Builds the images (scripts/build_images.py), then runs the chart's pod specs as containers
(scripts/harness/pods.py): MLflow, a default-sized training of the synthetic series, and
the predictor. Measures what one request to MLflow costs its least-privileged user (the
predictor's, through the chart's own auth configuration), the predictor's time from
container start to SERVING (its readiness probe) over fresh starts, each with empty volumes
like a new pod, and its memory after 1,000 forecasts. Writes bench/reports/containers.md
and containers.json.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import docker

from bench.serving import rss_mb
from scripts.build_images import chart_app_version
from scripts.harness.chart import Helm, job_named, named, one_host_flags, pod_spec, training_job
from scripts.harness.pods import PodHost
from scripts.harness.processes import free_port
from services.client.client import ForecastClient, Tls
from services.core.naming import PRICES_EXPERIMENT

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "bench" / "reports"
TICKER = "PETR4.SA"
STARTS = 5
FORECASTS = 1000
REQUESTS = 20


def mlflow_request_ms(port: int, user: str, password: str) -> list[float]:
    """Milliseconds of each of REQUESTS ``GET experiments/get-by-name`` as ``user``."""
    url = f"http://localhost:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name="
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        url + PRICES_EXPERIMENT, headers={"Authorization": f"Basic {auth}"}
    )
    took = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        took.append((time.perf_counter() - started) * 1000)
    return took


def working_set_mb(container) -> float:
    """The cgroup's usage less its inactive page cache: what ``kubectl top`` reports, and
    what the kubelet compares with the memory limit."""
    stats = container.stats(stream=False)["memory_stats"]
    return (stats["usage"] - stats["stats"].get("inactive_file", 0)) / 2**20


def main() -> int:
    started = time.monotonic()
    if subprocess.run([sys.executable, str(ROOT / "scripts" / "build_images.py")]).returncode:
        raise SystemExit("bench-containers: the images did not build")
    client = docker.from_env(timeout=600)
    tag = chart_app_version()
    sizes = {
        name: client.images.get(f"petr4-{name}:{tag}").attrs["Size"] / 1e6
        for name in ("trainer", "predictor", "mlflow")
    }
    ports = {
        "grpc": free_port(),
        "health": free_port(),
        "metrics": free_port(),
        "mlflow": free_port(),
    }
    docs = Helm().template(*one_host_flags(ports, ["--champion-tolerance", "1"]))
    results: dict = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "image_mb": sizes,
    }
    with tempfile.TemporaryDirectory() as folder:
        host = PodHost(client, Path(folder))
        host.use(docs)
        try:
            host.pod("mlflow", pod_spec(named(docs, "Deployment", "-mlflow"))).start().wait_ready(
                120
            )
            accounts = job_named(docs, "petr4-mlflow-accounts")  # the chart's secured defaults
            host.pod("accounts", pod_spec(accounts)).start().wait(300)
            print("bench-containers: training (default settings, synthetic series) ...", flush=True)
            training_started = time.monotonic()
            job = training_job(docs)
            host.pod("train", pod_spec(job)).start().wait(1800)
            results["training_seconds"] = time.monotonic() - training_started
            serve = host.secrets["petr4-mlflow-user-serve"]
            took = mlflow_request_ms(ports["mlflow"], serve["username"], serve["password"])
            results["mlflow_request_ms"] = {"each": took, "median": statistics.median(took)}

            spec = pod_spec(named(docs, "Deployment", "-predictor"))
            serving = []
            for number in range(STARTS):
                predictor = host.pod(f"predictor-{number}", spec).start()
                serving.append(predictor.wait_ready(120))
                if number < STARTS - 1:
                    predictor.terminate()
                    predictor.remove()
            print(f"bench-containers: {FORECASTS} forecasts ...", flush=True)
            ca, token = host.predictor_credentials(Path(folder))
            secured = {"tls": Tls(ca), "token": token.read_text().strip()}
            with ForecastClient(f"localhost:{ports['grpc']}", **secured) as forecaster:
                for _ in range(FORECASTS):
                    forecaster.forecast(TICKER)
            (container,) = predictor.containers
            container.reload()
            results["predictor"] = {
                "serving_seconds": serving,
                "serving_seconds_median": statistics.median(serving),
                "memory_limit_mb": container.attrs["HostConfig"]["Memory"] / 2**20,
                "rss_mb": rss_mb(container.attrs["State"]["Pid"]),
                "working_set_mb": working_set_mb(container),
            }
        finally:
            host.remove_all()
    results["bench_seconds"] = time.monotonic() - started
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "containers.json").write_text(json.dumps(results, indent=2))
    report = markdown(results)
    (REPORTS / "containers.md").write_text(report)
    print(report)
    return 0


def markdown(r: dict) -> str:
    p = r["predictor"]
    rss = p["rss_mb"]
    sizes = ", ".join(f"{name} {mb:.0f} MB" for name, mb in r["image_mb"].items())
    return "\n".join(
        [
            "# The images, and the predictor as the chart runs it",
            "",
            f"Measured {r['measured_at']} on {r['machine']} by `make bench-containers`: the chart's",
            "pod specs from `helm template`, run as containers (non-root, read-only root, the",
            "emptyDirs, the memory limit), on the synthetic series, secured as installed (TLS, a",
            "token, MLflow accounts).",
            "",
            f"- Image sizes: {sizes}.",
            f"- Default training in its container: {r['training_seconds']:.0f} s.",
            f"- One MLflow request as the predictor's least-privileged user (`GET "
            f"experiments/get-by-name`, {REQUESTS} in a row, the chart's auth configuration "
            f"and credential cache): median {r['mlflow_request_ms']['median']:.1f} ms "
            f"(first {r['mlflow_request_ms']['each'][0]:.0f} ms; target <= 25 ms).",
            f"- Predictor, container start to SERVING (its readiness probe), {STARTS} fresh starts:",
            f"  median {p['serving_seconds_median']:.2f} s (each: "
            + ", ".join(f"{s:.2f}" for s in p["serving_seconds"])
            + "; target <= 5 s).",
            f"- Predictor memory after {FORECASTS} forecasts (target <= 200 MiB): "
            f"{rss['VmRSS']:.0f} MiB resident (peak {rss['VmHWM']:.0f} MiB), of which "
            f"{rss['RssAnon']:.0f} MiB are its own and {rss['RssFile']:.0f} MiB mapped files "
            f"(libraries' code, shared with any process that maps them); working set "
            f"{p['working_set_mb']:.0f} MiB, against the pod's limit of {p['memory_limit_mb']:.0f} MiB.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
