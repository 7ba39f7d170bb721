"""Who may call the predictor: TLS certificates and bearer tokens, both read from files that
Secrets mount, and both re-read when those files change, so a rotation needs no restart.

Tokens are compared in constant time, against every accepted token, and never logged. The
health service is exempt: the kubelet's probes send no metadata. Reflection is not: the
contract is public, but nothing is answered to a caller that has not shown a token.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc

from services.core.tokens import TokenFile, from_header
from services.predictor.metrics import PredictorMetrics

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def _stamp(paths: list[Path]) -> tuple:
    """What changes when any of the files is replaced, as a Secret's update does."""
    return tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_size, os.stat(p).st_ino) for p in paths)


def outcome_of(tokens: TokenFile, metadata) -> str:
    """ok, missing or invalid, for a call's invocation metadata."""
    header = next((v for k, v in metadata or () if k == "authorization"), None)
    token = from_header(header)
    if token is None:
        return "missing"
    return "ok" if tokens.accepts(token) else "invalid"


REFUSALS = {
    "missing": "missing credentials: send the header authorization: Bearer <token>",
    "invalid": "invalid credentials: the bearer token is not one this server accepts",
}


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without an accepted token before their payload is parsed; health passes."""

    def __init__(self, tokens: TokenFile, metrics: PredictorMetrics):
        self.tokens = tokens
        self.outcomes = {o: metrics.auth.labels(o) for o in ("ok", "missing", "invalid")}

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(HEALTH_PREFIX):
            return continuation(handler_call_details)
        outcome = outcome_of(self.tokens, handler_call_details.invocation_metadata)
        self.outcomes[outcome].inc()
        if outcome == "ok":
            return continuation(handler_call_details)
        return _refusal(continuation(handler_call_details), REFUSALS[outcome])


def _refusal(handler, message: str):
    """A handler of the method's own kind that refuses, without deserializing anything."""

    def refuse(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is not None and handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler is not None and handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse)
    if handler is not None and handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


def expiry_timestamp(pem: bytes) -> float:
    """When a PEM certificate expires, as Unix time."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem).not_valid_after_utc.timestamp()


class ServerTls:
    """The server's certificate and key (and the clients' CA, for mutual TLS), re-read from
    their files before a new connection's handshake whenever they have changed;
    ``on_certificate`` hears when the certificate served expires, at each read."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None, on_certificate=None):
        self.paths = [p for p in (cert, key, client_ca) if p is not None]
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.on_certificate = on_certificate or (lambda expires: None)
        self._stamp = _stamp(self.paths)
        self._initial = self._configuration()

    def _configuration(self):
        pem = self.cert.read_bytes()
        pair = (self.key.read_bytes(), pem)
        roots = self.client_ca.read_bytes() if self.client_ca else None
        configuration = grpc.ssl_server_certificate_configuration([pair], root_certificates=roots)
        self.on_certificate(expiry_timestamp(pem))
        return configuration

    def _fetch(self):
        """Called by gRPC before each handshake: a new configuration, or None for no change."""
        try:
            stamp = _stamp(self.paths)
            if stamp == self._stamp:
                return None
            configuration = self._configuration()
        except (OSError, ValueError):  # mid-rotation: the next handshake tries again
            log.warning("TLS files could not be read; the certificate before keeps serving")
            return None
        self._stamp = stamp
        log.info("TLS certificate re-read from %s", self.cert)
        return configuration

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=self.client_ca is not None
        )
