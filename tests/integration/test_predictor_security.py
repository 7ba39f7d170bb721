"""The predictor secured as the chart runs it, with real processes and real TLS: bearer
tokens, mutual TLS, certificates rotated on disk, the plaintext health port, what the
client tells a user who gets it wrong, and garbage on the wire."""

from __future__ import annotations

import os
import random
import re
import urllib.request

import grpc
import pytest

from scripts.harness.certs import Authority
from scripts.harness.processes import PredictorProcess, run_cli
from services.api import forecast_pb2
from services.client.client import ForecastClient, Tls
from services.predictor.security import expiry_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKENS = ["first-token-5f0c2a", "second-token-9e81b7"]  # two: the old one and the new


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority.create(folder / "ca")
    return {
        "ca": ca,
        "server": ca.sign("server"),
        "client": ca.sign("client", "DNS:petr4-client", client=True),
        "other": Authority.create(folder / "other", "other-ca"),
        "tokens": write(folder / "tokens", "# one a line\n" + "\n".join(TOKENS) + "\n"),
        "token": write(folder / "token", TOKENS[1] + "\n"),
        "wrong": write(folder / "wrong", "not-a-token\n"),
    }


def write(path, text: str):
    path.write_text(text)
    return path


def secured(served_model, pki, root, *extra: str) -> PredictorProcess:
    server = pki["server"]
    return PredictorProcess(
        root,
        served_model.env,
        *served_model.serve_args("--tls-cert-file", str(server.cert), "--tls-key-file"),
        str(server.key),
        *("--token-file", str(pki["tokens"]), *extra),
        health_port=0,
    )


@pytest.fixture(scope="module")
def predictor(served_model, pki, tmp_path_factory):
    process = secured(served_model, pki, tmp_path_factory.mktemp("secured"))
    try:
        yield process.start().wait_serving()
    finally:
        process.stop()


def client(target, pki, token: str | None = TOKENS[0], ca="ca") -> ForecastClient:
    return ForecastClient(target, tls=Tls(pki[ca].cert), token=token)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


def counted(url: str, outcome: str) -> float:
    text = urllib.request.urlopen(url).read().decode()
    found = re.search(rf'petr4_grpc_auth_checks_total{{outcome="{outcome}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_over_tls_with_a_right_token_a_forecast_answers(predictor, pki, served_model):
    for token in TOKENS:  # either token, the new one and the one it replaces
        with client(predictor.target, pki, token) as forecaster:
            assert forecaster.forecast(served_model.ticker).model.version == "1"


def test_no_token_and_a_wrong_token_are_unauthenticated_and_counted(predictor, pki, served_model):
    before = {o: counted(predictor.metrics_url, o) for o in ("missing", "invalid")}
    with client(predictor.target, pki, token=None) as anonymous:
        error = refused(lambda: anonymous.forecast(served_model.ticker))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "missing credentials: send the header authorization: Bearer <token>"
    with client(predictor.target, pki, token="guess") as guesser:
        error = refused(lambda: guesser.model_info())
        assert guesser.health() == "SERVING"  # health asks for nothing
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == (
        "invalid credentials: the bearer token is not one this server accepts"
    )
    assert counted(predictor.metrics_url, "missing") == before["missing"] + 1
    assert counted(predictor.metrics_url, "invalid") == before["invalid"] + 1
    assert "guess" not in predictor.output() and TOKENS[0] not in predictor.output()


def test_reflection_wants_a_token_too(predictor, pki):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with client(predictor.target, pki, token=None) as anonymous:
        stub = reflection_pb2_grpc.ServerReflectionStub(anonymous.channel)
        error = refused(lambda: list(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    with client(predictor.target, pki) as caller:
        stub = reflection_pb2_grpc.ServerReflectionStub(caller.channel)
        (answer,) = stub.ServerReflectionInfo(iter([request]), metadata=caller.metadata, timeout=5)
    assert "petr4.forecast.v1.ForecastService" in {
        s.name for s in answer.list_services_response.service
    }


def test_the_health_port_answers_in_plaintext(predictor):
    with ForecastClient(predictor.health_target) as probe:
        assert probe.health() == "SERVING"
        with pytest.raises(grpc.RpcError) as error:  # health, and nothing else
            probe.forecast("PETR4.SA")
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize(
    ("case", "code", "line"),
    [
        ("right", 0, None),
        ("no token", 6, "petr4-forecast: UNAUTHENTICATED: missing credentials"),
        ("wrong token", 6, "petr4-forecast: UNAUTHENTICATED: invalid credentials"),
        ("wrong CA", 7, "the server's certificate is not signed by --tls-ca-file"),
        ("TLS to plaintext", 8, "the server does not speak TLS on this port"),
        ("plaintext to TLS", 9, "the server closed the connection at once: it speaks TLS"),
    ],
)
def test_the_client_says_what_is_wrong_in_one_line(predictor, pki, served_model, case, code, line):
    target, flags = predictor.target, ["--tls-ca-file", str(pki["ca"].cert)]
    token = ["--token-file", str(pki["token"])]
    if case == "no token":
        token = []
    elif case == "wrong token":
        token = ["--token-file", str(pki["wrong"])]
    elif case == "wrong CA":
        flags = ["--tls-ca-file", str(pki["other"].cert)]
    elif case == "TLS to plaintext":
        target = predictor.health_target
    elif case == "plaintext to TLS":
        flags = []
    done = run_cli(
        ["petr4-forecast", "--target", target, "--ticker", served_model.ticker, *flags, *token],
        {},
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    if line is not None:
        (said, *hint) = done.stderr.strip().splitlines()
        assert line in said and len(hint) <= 1, done.stderr


def test_mutual_tls_refuses_a_client_without_a_certificate(served_model, pki, tmp_path):
    process = secured(served_model, pki, tmp_path, "--tls-client-ca-file", str(pki["ca"].cert))
    try:
        process.start().wait_serving()
        with client(process.target, pki) as anonymous:
            error = refused(lambda: anonymous.forecast(served_model.ticker))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        mutual = Tls(pki["ca"].cert, pki["client"].cert, pki["client"].key)
        with ForecastClient(process.target, tls=mutual, token=TOKENS[0]) as known:
            assert known.forecast(served_model.ticker).ticker == served_model.ticker
    finally:
        process.stop()


def certificate_expiry(url: str) -> float | None:
    text = urllib.request.urlopen(url).read().decode()
    found = re.search(r"^petr4_tls_certificate_expiry_timestamp_seconds (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def test_the_served_certificate_s_expiry_is_exported(predictor, pki):
    """What Petr4CertificateExpiresSoon watches: the certificate's own notAfter."""
    assert certificate_expiry(predictor.metrics_url) == expiry_timestamp(
        pki["server"].cert.read_bytes()
    )


def test_a_certificate_replaced_on_disk_serves_the_next_connection(served_model, pki, tmp_path):
    """As a Secret's rotation does: new files under the same names, no restart."""
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "tls.crt", live / "tls.key"
    cert.write_bytes(pki["server"].cert.read_bytes())
    key.write_bytes(pki["server"].key.read_bytes())
    process = PredictorProcess(
        tmp_path,
        served_model.env,
        *served_model.serve_args("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        health_port=0,
    )
    try:
        process.start().wait_serving()
        with client(process.target, pki, token=None) as before:
            assert before.forecast(served_model.ticker)
        renewed = pki["other"].sign("server-renewed")
        for source, target in ((renewed.cert, cert), (renewed.key, key)):
            staged = target.with_suffix(".new")
            staged.write_bytes(source.read_bytes())
            os.replace(staged, target)  # atomic, as the kubelet swaps a Secret's files
        with client(process.target, pki, token=None, ca="other") as after:
            assert after.forecast(served_model.ticker)
        with client(process.target, pki, token=None) as stale:  # the old CA no longer fits
            assert refused(lambda: stale.forecast(served_model.ticker)).code() == (
                grpc.StatusCode.UNAVAILABLE
            )
        assert "TLS certificate re-read" in process.output()
        assert process.process.poll() is None
        assert certificate_expiry(process.metrics_url) == expiry_timestamp(
            renewed.cert.read_bytes()
        )
    finally:
        process.stop()


def payloads(count: int = 3000, seed: int = 7) -> list[bytes]:
    """Random bytes, a valid request with flipped bytes, and truncations of it."""
    rng = random.Random(seed)
    valid = forecast_pb2.ForecastRequest(
        ticker="PETR4.SA",
        history=[
            forecast_pb2.Bar(
                date=f"2024-01-{d:02d}", open=30, high=31, low=29, close=30.5, volume=1e6
            )
            for d in range(2, 30)
        ],
    ).SerializeToString()
    found = []
    for n in range(count):
        kind = n % 3
        if kind == 0:
            found.append(rng.randbytes(rng.randrange(1, 400)))
        elif kind == 1:
            flipped = bytearray(valid)
            for _ in range(rng.randrange(1, 8)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            found.append(bytes(flipped))
        else:
            found.append(valid[: rng.randrange(1, len(valid))])
    return found


def test_garbage_on_the_wire_is_counted_in_a_line_and_hurts_nobody(predictor, pki, served_model):
    sent = payloads()
    unparsable = 0
    for payload in sent:
        try:
            forecast_pb2.ForecastRequest.FromString(payload)
        except Exception:
            unparsable += 1
    lines_before = len(predictor.output().splitlines())
    codes = {}
    with client(predictor.target, pki) as caller:
        raw = caller.channel.unary_unary("/petr4.forecast.v1.ForecastService/Forecast")
        for payload in sent:
            try:
                raw(payload, metadata=caller.metadata, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            codes[code] = codes.get(code, 0) + 1
        assert caller.forecast(served_model.ticker).ticker == served_model.ticker  # still up
    assert grpc.StatusCode.INTERNAL not in codes, codes
    assert codes[grpc.StatusCode.INVALID_ARGUMENT] >= unparsable > 2000
    text = urllib.request.urlopen(predictor.metrics_url).read().decode()
    found = re.search(r'petr4_grpc_malformed_requests_total\{method="Forecast"\} (\S+)', text)
    assert float(found.group(1)) == unparsable
    logged = predictor.output().splitlines()[lines_before:]
    assert len(logged) <= unparsable and "Traceback" not in "\n".join(logged)
    assert len([line for line in logged if "malformed" in line]) <= 2  # one line per 10 s
