"""SIGTERM, as Kubernetes sends it to stop a training pod.

Before registration the attempt fails: the process exits 143 (128 + SIGTERM, as a shell
reports it), its MLflow run is marked FAILED, and the Job retries it. Once registration has
begun the attempt's work completes instead: a retry would give its tickers a second version.
Lightning's own handler would raise a SystemExit with no code, which exits 0 and has the Job
count a training that registered nothing as a success.
"""

from __future__ import annotations

import logging
import signal

log = logging.getLogger(__name__)

EXIT_CODE = 128 + signal.SIGTERM


class Stopped(SystemExit):
    """SIGTERM arrived before registration: nothing of this attempt was registered."""

    def __init__(self):
        super().__init__(EXIT_CODE)


def _stop(signum, frame):
    raise Stopped()


def _finish(signum, frame):
    log.warning("SIGTERM during registration: the pass finishes first, so no ticker is left out")


def stop_on_sigterm() -> None:
    """For the process's main thread (signal handlers live there); Lightning's fit keeps this
    handler beside its own and restores it afterwards."""
    signal.signal(signal.SIGTERM, _stop)


def registering() -> None:
    """From here a SIGTERM no longer fails the attempt, where stop_on_sigterm set it to."""
    if signal.getsignal(signal.SIGTERM) is _stop:
        signal.signal(signal.SIGTERM, _finish)
