"""petr4-forecast: ask a predictor for the next trading day's close.

petr4-forecast --ticker PETR4.SA                      forecast from the latest prices
petr4-forecast --ticker PETR4.SA --history-csv F.csv  forecast from the bars in a CSV
petr4-forecast info                                   what model serves each ticker
petr4-forecast health                                 exit 0 only when SERVING
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.naming import Ticker
from services.core.settings import parse_settings

# By gRPC status name: grpc itself loads in main, once its core's log level is set.
EXIT_CODES = {
    "INVALID_ARGUMENT": 2,
    "NOT_FOUND": 3,
    "UNAVAILABLE": 4,
    "DEADLINE_EXCEEDED": 5,
    "UNAUTHENTICATED": 6,
}
HINTS = {
    "UNAVAILABLE": "is petr4-serve running at {target} and SERVING? (models may still be loading)",
    "DEADLINE_EXCEEDED": "no answer within {timeout:g} s; raise --timeout or check the server",
    "UNAUTHENTICATED": "pass --token-file with a token the server accepts",
}
# What gRPC says when the two ends do not agree on TLS: (marker, exit code, what to tell).
TLS_FAILURES = (
    (
        "CERTIFICATE_VERIFY_FAILED",
        7,
        "the server's certificate is not signed by --tls-ca-file (or names another host)",
    ),
    (
        "WRONG_VERSION_NUMBER",
        8,
        "the server does not speak TLS on this port: drop --tls-ca-file, or use its TLS port",
    ),
    (
        "Socket closed",
        9,
        "the server closed the connection at once: it speaks TLS (pass --tls-ca-file) or "
        "wants a client certificate (pass --tls-cert-file and --tls-key-file)",
    ),
)


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PETR4_CLIENT_")

    target: str = Field("localhost:50051", description="predictor address, HOST:PORT")
    ticker: Ticker = Field(
        "PETR4.SA", description="ticker to forecast (for info: empty lists every model)"
    )
    history_csv: Path | None = Field(
        None, description="forecast from the bars of this Yahoo-format CSV"
    )
    history_bars: int = Field(250, ge=1, description="send only the last N bars of --history-csv")
    json_output: bool = Field(
        False, description="print the answer as JSON", json_schema_extra={"flag": "--json"}
    )
    timeout: float = Field(10.0, gt=0, description="seconds to wait for an answer")
    tls_ca_file: Path | None = Field(
        None, description="speak TLS, trusting the server's certificate when this PEM CA signed it"
    )
    tls_cert_file: Path | None = Field(
        None, description="for mutual TLS: the client's PEM certificate (with --tls-key-file)"
    )
    tls_key_file: Path | None = Field(None, description="the PEM private key of --tls-cert-file")
    token_file: Path | None = Field(
        None, description="send the first token of this file as 'authorization: Bearer'"
    )
    round_robin: bool = Field(
        False,
        description="spread calls over every address the target resolves to, such as the "
        "chart's headless Service: dns:///petr4-predictor-headless.forecast:50051",
    )


def forecast_table(response) -> str:
    interval = response.interval
    rows = [
        ("ticker", response.ticker + ("  (SYNTHETIC data)" if response.synthetic_data else "")),
        ("last close", f"R$ {response.last_close:.2f} on {response.last_date}"),
        (
            "forecast",
            f"R$ {response.predicted_close:.2f} on {response.target_date} ({response.change_pct:+.2f} %)",
        ),
        (f"{interval.level:.0%} interval", f"R$ {interval.lower:.2f} to R$ {interval.upper:.2f}"),
        ("model", f"{response.model.name} v{response.model.version} (run {response.model.run_id})"),
    ]
    return "\n".join(f"{name:>14}  {value}" for name, value in rows)


def info_table(response) -> str:
    blocks = []
    for info in response.models:
        test, naive = info.test_metrics, info.naive_metrics
        ratio = (
            test.get("mae_brl", float("nan")) / naive.get("mae_brl", float("nan"))
            if naive
            else float("nan")
        )
        rows = [
            (
                "ticker",
                info.ticker + ("  (trained on SYNTHETIC data)" if info.synthetic_data else ""),
            ),
            ("model", f"{info.model.name} v{info.model.version} from {info.uri}"),
            ("run", info.model.run_id),
            ("trained at", info.trained_at),
            (
                "data",
                f"{info.data_first_date} to {info.data_last_date}; serving prices to {info.prices_last_date}",
            ),
            ("window", f"{info.window} days (needs {info.min_history_bars} bars)"),
            (
                "test MAE",
                f"R$ {test.get('mae_brl', float('nan')):.4f} vs naive R$ "
                f"{naive.get('mae_brl', float('nan')):.4f} (ratio {ratio:.4f})",
            ),
            (
                "interval",
                f"{info.interval_level:.0%}, test coverage {test.get('coverage', float('nan')):.1%}, "
                f"interval score R$ {test.get('interval_score_brl', float('nan')):.4f}",
            ),
        ]
        blocks.append("\n".join(f"{name:>12}  {value}" for name, value in rows))
    return "\n\n".join(blocks)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Two words in front of one set of flags, not pydantic-settings' subcommands: those
    # would make "forecast" a word to type too, and petr4-forecast --ticker X is the call.
    command = argv[0] if argv[:1] in (["info"], ["health"]) else "forecast"
    if command != "forecast":
        argv = argv[1:]
    prog = "petr4-forecast" + ("" if command == "forecast" else f" {command}")
    settings = parse_settings(ClientSettings, argv, prog, __doc__)

    # gRPC's core logs each failed TLS handshake to stderr; the user gets our one line instead.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc
    from google.protobuf.json_format import MessageToDict

    from services.client.client import (  # grpc loads after --help
        ForecastClient,
        Tls,
        bars_from_frame,
        read_token,
    )

    tls = None
    try:
        if settings.tls_ca_file is not None:
            tls = Tls(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
            tls.credentials()  # read now: a missing or unreadable file is one line
        token = read_token(settings.token_file) if settings.token_file else None
    except (OSError, ValueError) as exc:
        print(f"petr4-forecast: {exc}", file=sys.stderr)
        return 2

    history = None
    if command == "forecast" and settings.history_csv is not None:
        from services.core.prices import BAR_COLUMNS, PriceFileError, read_price_csv

        try:
            frame = read_price_csv(settings.history_csv, BAR_COLUMNS)
        except PriceFileError as exc:
            print(f"petr4-forecast: {exc}", file=sys.stderr)
            return 2
        history = bars_from_frame(frame.iloc[-settings.history_bars :])
    try:
        with ForecastClient(
            settings.target,
            settings.timeout,
            round_robin=settings.round_robin,
            tls=tls,
            token=token,
        ) as client:
            if command == "health":
                status = client.health()
                print(f"{settings.target}: {status}")
                return 0 if status == "SERVING" else 4
            if command == "info":
                given = "ticker" in settings.model_fields_set  # by flag or environment
                response = client.model_info(settings.ticker if given else "")
                text = info_table(response)
            else:
                response = client.forecast(settings.ticker, history)
                text = forecast_table(response)
    except grpc.RpcError as error:
        return _failed(error, settings)
    if settings.json_output:
        print(json.dumps(MessageToDict(response, preserving_proto_field_name=True), indent=2))
    else:
        print(text)
    return 0


def _failed(error, settings: ClientSettings) -> int:
    """One line for a failed call (a grpc.RpcError), and its exit code; TLS disagreements
    said plainly."""
    code, details = error.code(), error.details() or ""
    if code.name == "UNAVAILABLE":
        for marker, exit_code, problem in TLS_FAILURES:
            if marker in details:
                print(f"petr4-forecast: {settings.target}: {problem}", file=sys.stderr)
                return exit_code
    hint = HINTS.get(code.name, "").format(target=settings.target, timeout=settings.timeout)
    print(
        f"petr4-forecast: {code.name}: {details}" + (f"\n  {hint}" if hint else ""),
        file=sys.stderr,
    )
    return EXIT_CODES.get(code.name, 1)


if __name__ == "__main__":
    sys.exit(main())
