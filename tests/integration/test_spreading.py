"""Calls spread over predictor pods: a client that balances over every address (the chart's
headless Service), and a long-lived client behind a Service's one virtual address that
reaches a pod added after it connected, because the server ages its connections out."""

from __future__ import annotations

import re
import urllib.request

import pytest

from scripts.harness.faults import TcpBalancer
from scripts.harness.processes import PredictorProcess, free_port, wait_until
from services.client.client import ForecastClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def answered(process: PredictorProcess) -> float:
    text = urllib.request.urlopen(process.metrics_url).read().decode()
    found = re.search(r'petr4_grpc_requests_total\{code="OK",method="Forecast"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def two_pods(served_model, tmp_path):
    """Two predictors on one port at two loopback addresses, as two pods on two IPs."""
    port = free_port()
    pods = [
        PredictorProcess(tmp_path, served_model.env, *served_model.serve_args(), grpc_port=port)
        for _ in range(2)
    ]
    for pod, address in zip(pods, ("127.0.0.1", "127.0.0.2"), strict=True):
        pod.args[pod.args.index("--host") + 1] = address
        pod.target = pod.health_target = f"{address}:{port}"
        pod.metrics_url = pod.metrics_url.replace("127.0.0.1", address)
    try:
        for pod in pods:
            pod.start().wait_serving()
        yield pods, f"ipv4:127.0.0.1:{port},127.0.0.2:{port}"
    finally:
        for pod in pods:
            pod.stop()


def test_round_robin_spreads_one_clients_calls_over_every_address(two_pods, served_model):
    pods, target = two_pods
    with ForecastClient(target, round_robin=True) as client:
        # Until both connections are up, the one that is takes the calls.
        wait_until(
            lambda: client.forecast(served_model.ticker) and all(answered(p) for p in pods),
            30,
            "both connections",
            interval=0.05,
        )
        before = [answered(p) for p in pods]
        for _ in range(40):
            client.forecast(served_model.ticker)
    spread = [answered(p) - b for p, b in zip(pods, before, strict=True)]
    assert spread == [20.0, 20.0]
    with ForecastClient(target) as client:  # one connection: one pod takes every call
        for _ in range(10):
            client.forecast(served_model.ticker)
    after = sorted(answered(p) - b for p, b in zip(pods, before, strict=True))
    assert after == [20.0, 30.0]


def test_a_long_lived_client_reaches_a_pod_added_after_it_connected(served_model, tmp_path):
    """Behind a Service's one address, HTTP/2 keeps the one connection it made: only the
    server's maximum connection age sends the client back through the balancer."""
    first = PredictorProcess(
        tmp_path, served_model.env, *served_model.serve_args("--max-connection-age-seconds", "1")
    )
    second = PredictorProcess(
        tmp_path, served_model.env, *served_model.serve_args("--max-connection-age-seconds", "1")
    )
    service = TcpBalancer(first.grpc_port)
    try:
        first.start().wait_serving()
        with ForecastClient(f"127.0.0.1:{service.port}") as client:
            client.forecast(served_model.ticker)
            second.start().wait_serving()
            service.backends.append(second.grpc_port)  # the scale-up's new endpoint

            def both_answer() -> bool:
                client.forecast(served_model.ticker)
                return answered(second) > 0

            wait_until(both_answer, 30, "the new pod to get calls from the old client")
        assert answered(first) > 0
    finally:
        service.close()
        first.stop()
        second.stop()
