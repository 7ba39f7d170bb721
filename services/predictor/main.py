"""petr4-serve: the gRPC predictor. Loads each ticker's model from the MLflow registry
and serves next-trading-day forecasts, health, reflection and Prometheus metrics."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

import pyarrow

from services.core import tracking
from services.core.logging import configure_logging
from services.core.settings import parse_settings
from services.predictor.server import PredictorServer, StartupError
from services.predictor.settings import ServeSettings

log = logging.getLogger("services.predictor")


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(ServeSettings, argv, "petr4-serve", __doc__)
    configure_logging(settings.log_level, settings.json_logs)
    # Snapshots are read on several loader threads, and Arrow's default allocator keeps a
    # cache for each: about 2 MiB per ticker, held for good. The system allocator gives it back.
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    # No reachability check: the start-up loop retries MLflow with its own backoff and deadline.
    tracking.connect(settings, "petr4-serve", check=False)
    server = PredictorServer(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: server.stopping.set())
    server.start()
    try:
        server.load()
    except StartupError as exc:
        log.error("%s", exc)
        server.stop()
        print(f"petr4-serve: {exc}", file=sys.stderr)
        return 1
    server.stopping.wait()
    log.info(
        "shutting down: NOT_SERVING, then up to %.0f s for accepted RPCs",
        settings.shutdown_grace_seconds,
    )
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
