"""petr4-train: train the LSTM on the latest snapshot, evaluate it in R$ against the
baselines, log everything to MLflow and register a version per ticker."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.core.logging import configure_logging
from services.core.prices import PriceValidationError
from services.core.settings import parse_settings
from trainer.data import DataError
from trainer.export import ExportError
from trainer.settings import TrainSettings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(TrainSettings, argv, "petr4-train", __doc__)
    configure_logging(settings.log_level, settings.json_logs)
    from trainer.train import train  # torch and Lightning load only once the flags are valid

    try:
        result = train(settings)
    except (DataError, PriceValidationError, ExportError, FileNotFoundError) as exc:
        print(f"petr4-train: {exc}", file=sys.stderr)
        return 2
    print()
    print(result.summary)
    print()
    print(f"MLflow run {result.run_id}")
    if result.version is None:
        print("not registered (--no-register)")
    else:
        verdict = "moved to" if result.decision.promote else "kept off"
        print(
            f"registered {result.model_name} version {result.version}; "
            f"alias 'champion' {verdict} it:"
        )
        print(f"  {result.decision.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
