"""What the kind job of .github/workflows/ci.yml checks on a real cluster, beyond the README's
commands: a caller inside the cluster that counts failed calls through a rollout, Grafana's
dashboard answering with data, and Prometheus scraping the predictor with the chart's rules
and no alert but Watchdog firing.

    python scripts/check_cluster.py caller start|stop      the in-cluster caller
    python scripts/check_cluster.py monitoring              Grafana and Prometheus (port-forwarded)

It needs a cluster: the forge's kind job runs it, and the e2e tier (K3s) uses its caller.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

NAMESPACE = "forecast"
GRAFANA = "http://localhost:3000"
PROMETHEUS = "http://localhost:9090"
EXPECTED_ALERTS = {"Watchdog"}  # kube-prometheus-stack's always-firing heartbeat

# Calls the predictor through its Service, over TLS with the token, until SIGTERM. It prints a
# line at its first answer and whenever the served version changes, and at the end how many
# calls answered, the failures' codes and the model versions seen, in order.
CALLER = """
import json, signal, time
from pathlib import Path
import grpc
from services.client.client import ForecastClient, Tls, read_token
ok, failed, versions, stop = 0, [], [], []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
tls, token = Tls(Path("/tls/ca.crt")), read_token(Path("/auth/tokens"))
with ForecastClient("petr4-predictor:50051", timeout=5, tls=tls, token=token) as client:
    while not stop:
        try:
            version = client.forecast("PETR4.SA").model.version
            ok += 1
            if not versions or versions[-1] != version:
                versions.append(version)
                print(json.dumps({"progress": versions}), flush=True)
        except grpc.RpcError as error:
            failed.append(error.code().name)
        time.sleep(0.05)
print(json.dumps({"ok": ok, "failed": failed, "versions": versions}), flush=True)
"""


def kubectl(*args: str, stdin: str | None = None) -> str:
    """kubectl in the release's namespace, against the current context (or $KUBECONFIG)."""
    done = subprocess.run(
        ["kubectl", "-n", NAMESPACE, *args], input=stdin, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def start_caller(kubectl=kubectl) -> None:
    """A pod of the predictor's image that calls the Service until stopped."""
    image = kubectl(
        "get", "deployment", "petr4-predictor", "-o", "jsonpath={..containers[0].image}"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "caller", "labels": {"app.kubernetes.io/component": "caller"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [
                {
                    "name": "caller",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", CALLER],
                    "volumeMounts": [
                        {"name": "tls", "mountPath": "/tls"},
                        {"name": "auth", "mountPath": "/auth"},
                    ],
                }
            ],
            "volumes": [
                {"name": "tls", "secret": {"secretName": "petr4-predictor-tls"}},
                {"name": "auth", "secret": {"secretName": "petr4-predictor-tokens"}},
            ],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    kubectl("wait", "--for=condition=Ready", "pod/caller", "--timeout=300s")
    wait_for_version(None, kubectl)  # its first answer: calls flow from here on


def wait_for_version(version: str | None, kubectl=kubectl, seconds: float = 300) -> None:
    """Until the caller has had an answer from ``version`` (None: any version)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in kubectl("logs", "caller").splitlines():
            seen = json.loads(line).get("progress", [])
            if seen and (version is None or version in seen):
                return
        time.sleep(1)
    raise SystemExit(f"the caller saw no answer from version {version or 'any'} in {seconds:.0f} s")


def stop_caller(kubectl=kubectl) -> dict:
    """Stops the caller and returns its counts: {"ok", "failed", "versions"}."""
    signal_it = "import os, signal; os.kill(1, signal.SIGTERM)"
    kubectl("exec", "caller", "--", "python", "-c", signal_it)
    kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/caller", "--timeout=120s")
    counts = json.loads(kubectl("logs", "caller").strip().splitlines()[-1])
    if "ok" not in counts:
        raise SystemExit(f"the caller ended without its counts: {counts}")
    kubectl("delete", "pod", "caller")
    return counts


def get(url: str, auth: str | None = None) -> dict:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """Each panel's PromQL, its dashboard variables given the values Grafana would."""
    variables = {"$namespace": NAMESPACE, "$ticker": ".*", "$__rate_interval": "5m"}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            query = target["expr"]
            for variable, value in variables.items():
                query = query.replace(variable, value)
            queries.append((panel["title"], query))
    return queries


def monitoring() -> None:
    """Grafana's dashboard has data in every panel; Prometheus scrapes the predictor, holds the
    chart's rules, and fires nothing but Watchdog."""
    auth = "admin:petr4"  # k8s/kube-prometheus-stack-values.yaml's local login
    (found,) = get(f"{GRAFANA}/api/search?query=petr4-forecast", auth)
    dashboard = get(f"{GRAFANA}/api/dashboards/uid/{found['uid']}", auth)["dashboard"]
    (source,) = [s for s in get(f"{GRAFANA}/api/datasources", auth) if s["type"] == "prometheus"]
    empty = []
    for title, query in panel_queries(dashboard):
        url = f"{GRAFANA}/api/datasources/proxy/uid/{source['uid']}/api/v1/query?"
        answer = get(url + urllib.parse.urlencode({"query": query}), auth)
        if not answer["data"]["result"]:
            empty.append(f"{title}: {query}")
    targets = get(f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
    predictor = [t for t in targets if t["labels"].get("job") == "petr4-predictor"]
    rules = {g["name"] for g in get(f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]}
    firing = {
        a["labels"]["alertname"]
        for a in get(f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
        if a["state"] == "firing"
    }
    problems = [f"panel without data: {e}" for e in empty]
    if not predictor or any(t["health"] != "up" for t in predictor):
        problems.append(f"the predictor's target is not up: {predictor}")
    if not {"petr4-predictor", "petr4-jobs"} <= rules:
        problems.append(f"the chart's rules are not loaded: {sorted(rules)}")
    if firing - EXPECTED_ALERTS:
        problems.append(f"alerts firing: {sorted(firing - EXPECTED_ALERTS)}")
    if problems:
        raise SystemExit("\n".join(problems))
    print(
        f"{len(dashboard['panels'])} panels with data; predictor up; rules loaded; firing: {sorted(firing)}"
    )


def main() -> int:
    if sys.argv[1:] == ["caller", "start"]:
        start_caller()
    elif sys.argv[1:] == ["caller", "stop"]:
        counts = stop_caller()
        print(json.dumps(counts))
        if counts["failed"] or not counts["ok"]:
            raise SystemExit(f"{len(counts['failed'])} calls failed, {counts['ok']} answered")
    elif sys.argv[1:2] == ["monitoring"]:
        for attempt in range(20):  # the first scrapes and rule evaluations take a while
            try:
                monitoring()
                return 0
            except SystemExit as failure:
                if attempt == 19:
                    raise
                print(f"not yet: {failure}", flush=True)
                time.sleep(30)
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
