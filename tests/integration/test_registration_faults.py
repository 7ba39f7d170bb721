"""Registration through a registry that fails the way a scaled-out MLflow does: a replica gone
while a version is being created, so that the server made it and its answer never came back.
Asked again blindly, the registry would hold two versions of one run; the trainer looks first."""

from __future__ import annotations

import uuid

import pytest
from mlflow import MlflowClient

from scripts.harness.faults import AnswerLosingProxy
from services.core.naming import CHAMPION_ALIAS
from trainer.registry import Decision, register

pytestmark = pytest.mark.integration

CREATE_VERSION = b"POST /api/2.0/mlflow/model-versions/create"


@pytest.fixture
def run_with_a_model(mlflow_server, tmp_path):
    """A run holding a model folder (its contents do not matter to the registry)."""
    client = MlflowClient(mlflow_server.uri)
    experiment = client.create_experiment(f"faults-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"onnx")
    client.log_artifacts(run.info.run_id, str(tmp_path / "model"), "model")
    client.set_terminated(run.info.run_id)
    return run


def test_a_lost_answer_to_a_version_s_creation_registers_it_once(mlflow_server, run_with_a_model):
    proxy = AnswerLosingProxy(mlflow_server.port, CREATE_VERSION)
    try:
        client = MlflowClient(proxy.uri, registry_uri=proxy.uri)
        name = f"lstm-F{uuid.uuid4().hex[:6].upper()}.SA"
        run_id = run_with_a_model.info.run_id
        source = f"{run_with_a_model.info.artifact_uri}/model"
        version = register(client, name, run_id, source, {}, Decision(True, "test"))
    finally:
        proxy.close()
    assert proxy.lost == 1  # the server created it; the answer was lost
    direct = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    found = direct.search_model_versions(f"name = '{name}'")
    assert [v.version for v in found] == ["1"] == [version]
    assert direct.get_model_version_by_alias(name, CHAMPION_ALIAS).version == "1"


def test_without_the_look_a_blind_repeat_would_register_twice(mlflow_server, run_with_a_model):
    """What the look guards against, shown with MLflow's own client: it repeats the POST."""
    proxy = AnswerLosingProxy(mlflow_server.port, CREATE_VERSION)
    try:
        client = MlflowClient(proxy.uri, registry_uri=proxy.uri)
        name = f"lstm-B{uuid.uuid4().hex[:6].upper()}.SA"
        client.create_registered_model(name)
        run = run_with_a_model.info
        client.create_model_version(name, f"{run.artifact_uri}/model", run.run_id)
    finally:
        proxy.close()
    direct = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    assert len(direct.search_model_versions(f"name = '{name}'")) == 2
