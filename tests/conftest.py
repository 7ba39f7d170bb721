from __future__ import annotations

import contextlib
import os
import signal
import uuid
from pathlib import Path

import pytest

from scripts.harness.processes import MlflowServer
from tests.helpers import SCHEMAS, SHARED_DATA


def pytest_configure(config):
    # Progress bars from MLflow downloads only clutter captured test output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Every MLflow the tests start, and every client, child processes included.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip outside the e2e tier is a failure: CI installs and starts everything the
    other tiers need, so a skip there means a broken set-up, not a missing tool. Only what
    lives beside the project (../shared, absent from a fork's clone) may be missing."""
    outcome = yield
    report = outcome.get_result()
    in_ci = os.environ.get("CI") and item.get_closest_marker("e2e") is None
    if in_ci and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        if "beside the project" in str(reason) and not (SHARED_DATA.is_dir() and SCHEMAS.is_dir()):
            return
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every tier but e2e must run: {reason}"


def _children() -> dict[int, str]:
    """This process's live child processes: pid -> command line."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
            if int(fields["PPid"]) == os.getpid() and not fields["State"].startswith("Z"):
                command = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(status.parent.name)] = command.decode(errors="replace").strip()
        except (OSError, ValueError, KeyError):
            continue  # it ended while being read
    return found


def pytest_sessionfinish(session, exitstatus):
    """Every server a test started is stopped by the end: a leftover one fails the run."""
    leftover = _children()
    if leftover:
        for pid in leftover:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        listing = "; ".join(f"{pid}: {command[:120]}" for pid, command in leftover.items())
        session.config.get_terminal_writer().line(
            f"processes the tests left running (now killed): {listing}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _tracking_uri_unchanged():
    """A test that points MLflow elsewhere for good (mlflow.set_tracking_uri writes os.environ)
    sends every later test, and its children, to a server that may be gone: fail it here."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    after = os.environ.get("MLFLOW_TRACKING_URI")
    assert after == before, f"the test left MLFLOW_TRACKING_URI at {after!r} (was {before!r})"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow server for the whole session; MLflow clients here and in children use it."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = server.uri
    yield server
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous
    server.stop()


@pytest.fixture
def mlflow_env(mlflow_server):
    """The environment a child process needs to reach the test server."""
    return {"MLFLOW_TRACKING_URI": mlflow_server.uri}


@pytest.fixture
def experiment_name():
    """A fresh prices experiment per test, so tests sharing the server never see each other."""
    return f"prices-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real prices not found at {SHARED_DATA} (they live beside the project, not in it)"
        )
    return SHARED_DATA
