"""petr4-ingest: refresh daily prices and commit validated snapshots to MLflow."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.core import tracking
from services.core.logging import configure_logging
from services.core.settings import parse_settings
from services.core.snapshots import SnapshotStore
from services.ingestion.ingest import TickerResult, ingest
from services.ingestion.settings import IngestSettings
from services.ingestion.sources import make_source


def summary_table(results: list[TickerResult]) -> str:
    header = ("ticker", "status", "rows", "new", "last date", "run")
    rows = [
        (r.ticker, r.status, str(r.rows or ""), str(r.new_rows or ""), r.last_date, r.run_id[:12])
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(IngestSettings, argv, "petr4-ingest", __doc__)
    configure_logging(settings.log_level, settings.json_logs)
    tracking.connect(settings, "petr4-ingest")
    try:
        source = make_source(
            settings.source,
            seed=settings.synthetic_seed,
            yahoo_first_date=settings.first_date,
            cache_dir=settings.cache_dir / "yfinance",
        )
    except ValueError as exc:
        print(f"petr4-ingest: {exc}", file=sys.stderr)
        return 2
    if source.synthetic:
        print(
            "petr4-ingest: source is the SYNTHETIC series, not market data; snapshots are tagged so"
        )
    store = SnapshotStore(experiment=settings.experiment)
    results = ingest(settings.tickers, source, store, settings)
    for number, result in enumerate(results, start=1):
        line = f"[{number}/{len(results)}] {result.ticker}: {result.status}"
        if result.status == "committed":
            line += f" {result.rows} rows to {result.last_date} (+{result.new_rows})"
            line += f", run {result.run_id}"
        print(f"{line}; {result.message}" if result.message else line, flush=True)
    print()
    print(summary_table(results))
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"petr4-ingest: FAILED {result.ticker}: {result.message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
