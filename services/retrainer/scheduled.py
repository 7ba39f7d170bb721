"""petr4-retrain-scheduled: the retraining CronJob's turn, asked of the retraining receiver.

The receiver starts the scheduled training of the whole list unless a training runs (an
alert's, say); then this asks again every --poll-seconds until it starts, so the week's
retraining comes after the other one and never beside it. A receiver that does not answer
(restarting, its API server away) is asked again too; the Job's activeDeadlineSeconds bounds
the wait. Exits 0 once the training is started, 1 when the receiver refuses (a wrong token,
no scheduled training in its templates).

  petr4-retrain-scheduled --url http://petr4-retrainer:8080 --token-file /var/run/secrets/petr4/token
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.logging import configure_logging
from services.core.settings import parse_settings
from services.core.tokens import TokenFile

log = logging.getLogger("services.retrainer.scheduled")


class ScheduledSettings(BaseSettings):
    """petr4-retrain-scheduled's settings."""

    model_config = SettingsConfigDict(env_prefix="PETR4_SCHEDULED_")

    url: str = Field("http://127.0.0.1:8080", description="the retraining receiver's address")
    token_file: Path = Field(
        Path("/var/run/secrets/petr4/token"), description="file holding the shared bearer token"
    )
    poll_seconds: float = Field(
        30.0, gt=0, description="seconds between asks while another training runs"
    )
    timeout_seconds: float = Field(30.0, gt=0, description="seconds to wait for one answer")
    log_level: str = Field("INFO", description="logging level")
    json_logs: bool = Field(False, description="log one JSON object per line")


class Refused(RuntimeError):
    """The receiver answered, and not with a training started or running."""


def ask(settings: ScheduledSettings, token: str) -> dict:
    """One request: the receiver's answer ({"outcome", "job"}); Refused or OSError otherwise."""
    request = urllib.request.Request(
        f"{settings.url.rstrip('/')}/scheduled",
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            said = json.load(exc).get("error", "")
        except ValueError:
            said = ""
        if exc.code >= 500:  # the API server is away: worth asking again
            raise OSError(f"HTTP {exc.code} {said}".strip()) from None
        raise Refused(f"the receiver at {settings.url} answered HTTP {exc.code}: {said}") from None


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(ScheduledSettings, argv, "petr4-retrain-scheduled", __doc__)
    configure_logging(settings.log_level, settings.json_logs)
    try:
        token = TokenFile(settings.token_file).first()
    except (OSError, ValueError) as exc:
        print(f"petr4-retrain-scheduled: {exc}", file=sys.stderr)
        return 1
    while True:
        try:
            answer = ask(settings, token)
        except Refused as exc:
            print(f"petr4-retrain-scheduled: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # refused, reset, timed out, 5xx: the receiver may be restarting
            log.warning("the receiver at %s did not answer (%s)", settings.url, exc)
        else:
            if answer.get("outcome") == "started":
                print(f"started the scheduled training Job {answer['job']}")
                return 0
            log.info(
                "training Job %s runs; asking again in %.0f s",
                answer.get("job"),
                settings.poll_seconds,
            )
        time.sleep(settings.poll_seconds)


if __name__ == "__main__":
    sys.exit(main())
