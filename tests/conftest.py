from __future__ import annotations

import os
import uuid

import pytest

from tests.helpers import SHARED_DATA, MlflowServer


def pytest_configure(config):
    # Progress bars from MLflow downloads only clutter captured test output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Every MLflow the tests start, and every client, child processes included.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip outside the e2e tier is a failure: CI installs and starts everything the
    other tiers need, so a skip there means a broken set-up, not a missing tool."""
    outcome = yield
    report = outcome.get_result()
    in_ci = os.environ.get("CI") and item.get_closest_marker("e2e") is None
    if in_ci and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every tier but e2e must run: {reason}"


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
