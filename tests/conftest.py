from __future__ import annotations

import os
import uuid

import pytest

from tests.helpers import SHARED_DATA, MlflowServer


def pytest_configure(config):
    # Progress bars from MLflow downloads only clutter captured test output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


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
