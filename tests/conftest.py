from __future__ import annotations

import os
import uuid

import pytest

from tests.helpers import SHARED_DATA, MlflowServer


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


@pytest.fixture
def mlflow_env(mlflow_server, tmp_path, monkeypatch):
    """Point MLflow clients in this process and in child processes at the test server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
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


def pytest_configure(config):
    # Progress bars from MLflow downloads only clutter captured test output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
