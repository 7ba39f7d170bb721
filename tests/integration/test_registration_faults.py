"""Registration through a registry that fails: a replica gone while a version is being created
(the server made it, its answer never came back: asked again blindly, the registry would hold
two versions of one run; the trainer looks first), and a champion's lookup refused, failed or
never answered (the training stops, saying which, and registers nothing)."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from scripts.harness.faults import AnsweringProxy, AnswerLosingProxy, TcpProxy
from scripts.harness.processes import run_cli
from services.core.naming import CHAMPION_ALIAS
from services.core.tracking import lost_answer
from services.ingestion.sources import SyntheticSource
from tests.helpers import SMALL_TRAINING, ingest_csv
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


def test_without_the_look_a_repeat_would_register_twice(mlflow_server, run_with_a_model):
    """What the look guards against, with MLflow's own client: the call fails as if nothing
    happened, yet the version is there; asked again, the registry holds two."""
    proxy = AnswerLosingProxy(mlflow_server.port, CREATE_VERSION)
    try:
        client = MlflowClient(proxy.uri, registry_uri=proxy.uri)
        name = f"lstm-B{uuid.uuid4().hex[:6].upper()}.SA"
        client.create_registered_model(name)
        run = run_with_a_model.info
        with pytest.raises(MlflowException) as lost:
            client.create_model_version(name, f"{run.artifact_uri}/model", run.run_id)
        assert lost_answer(lost.value)
        direct = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
        assert len(direct.search_model_versions(f"name = '{name}'")) == 1
        client.create_model_version(name, f"{run.artifact_uri}/model", run.run_id)
    finally:
        proxy.close()
    assert len(direct.search_model_versions(f"name = '{name}'")) == 2


ALIAS_LOOKUP = b"GET /api/2.0/mlflow/registered-models/alias"


@pytest.fixture(scope="module")
def champion(mlflow_server, tmp_path_factory):
    """A ticker whose model has a champion, v1, trained and registered through the server."""
    ticker = f"G{uuid.uuid4().hex[:5].upper()}.SA"
    experiment = f"prices-{ticker}"
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    prices = SyntheticSource(seed=5, first_date=date(2021, 1, 4), end=date(2023, 12, 29)).fetch(
        ticker, None
    )
    ingest_csv(ticker, experiment, prices, tmp_path_factory.mktemp("prices") / "p.csv", env)
    trained = run_cli(training(ticker, experiment), env)
    assert trained.returncode == 0 and "alias 'champion' moved to it" in trained.stdout
    return ticker, experiment


def training(ticker: str, experiment: str) -> list[str]:
    return [
        "petr4-train", "--ticker", ticker, "--prices-experiment", experiment,
        "--experiment", f"training-{experiment}", *SMALL_TRAINING, "--champion-tolerance", "1",
        "--mlflow-timeout-seconds", "5",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("403", "answered HTTP 403 to /api/2.0/mlflow/registered-models/alias"),
        ("500", "answered HTTP 500"),
        ("nothing", "stopped answering (no answer in time)"),
    ],
)
def test_a_registry_that_cannot_name_the_champion_registers_nothing(
    mlflow_server, champion, fault, said
):
    """Only 'no such model' or 'no such alias' means no champion: a refusal, a server error
    or silence at the champion's lookup stops the registration, saying which, and neither
    a version nor the alias moves (the old reading promoted on the median alone)."""
    ticker, experiment = champion
    if fault == "nothing":
        proxy = TcpProxy(mlflow_server.port, hold=ALIAS_LOOKUP)
    else:
        proxy = AnsweringProxy(mlflow_server.port, ALIAS_LOOKUP, int(fault))
    try:
        done = run_cli(training(ticker, experiment), {"MLFLOW_TRACKING_URI": proxy.uri})
    finally:
        proxy.close()
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("petr4-train:")]
    assert said in line, line
    direct = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    name = f"lstm-{ticker}"
    assert [v.version for v in direct.search_model_versions(f"name = '{name}'")] == ["1"]
    assert direct.get_model_version_by_alias(name, CHAMPION_ALIAS).version == "1"
