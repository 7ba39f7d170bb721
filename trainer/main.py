"""petr4-train: train the LSTM on the latest snapshots, evaluate it in R$ against the
baselines, log everything to MLflow and register a version per ticker.

  petr4-train --ticker PETR4.SA                  one model for PETR4.SA, from its latest snapshot
  petr4-train --tickers PETR4.SA VALE3.SA ...    one pooled model for the list, a version each
  petr4-train --data prices.csv --no-register    a local CSV, an experiment only
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from services.core import tracking
from services.core.logging import configure_logging
from services.core.settings import parse_settings
from trainer import stopping
from trainer.errors import DataError, ExportError
from trainer.settings import TrainSettings

log = logging.getLogger("trainer")


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(TrainSettings, argv, "petr4-train", __doc__)
    configure_logging(settings.log_level, settings.json_logs)
    uri = tracking.connect(settings, "petr4-train")
    stopping.stop_on_sigterm()
    from lightning.pytorch.utilities.exceptions import SIGTERMException
    from mlflow.exceptions import MlflowException
    from requests import RequestException

    from services.core.prices import PriceFileError, PriceValidationError
    from trainer.train import train  # torch and Lightning load only once the flags are valid

    try:
        result = train(settings)
    except (DataError, PriceFileError, PriceValidationError, ExportError) as exc:
        print(f"petr4-train: {exc}", file=sys.stderr)
        return 2
    except (MlflowException, RequestException) as exc:  # the server went away mid-run
        log.debug("training failed", exc_info=True)
        print(f"petr4-train: {tracking.describe(exc, uri)}", file=sys.stderr)
        return 1
    except (stopping.Stopped, SIGTERMException):
        print("petr4-train: stopped by SIGTERM before registering: no version", file=sys.stderr)
        return stopping.EXIT_CODE
    print()
    print(result.summary)
    print()
    print(f"MLflow run {result.run_id}")
    if not settings.register_model:
        print("not registered (--no-register)")
    for registered in result.registered.values():
        verdict = "moved to" if registered.decision.promote else "kept off"
        print(
            f"registered {registered.model_name} version {registered.version}; "
            f"alias 'champion' {verdict} it:"
        )
        print(f"  {registered.decision.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
