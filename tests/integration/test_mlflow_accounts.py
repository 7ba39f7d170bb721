"""MLflow with accounts, as the chart sets it up: a real server running the basic-auth app,
the users made by petr4-accounts, and each component doing what it must and nothing more."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import date

import pytest

from scripts.harness.processes import MlflowServer, PredictorProcess, run_cli
from services.ingestion.sources import SyntheticSource
from tests.helpers import SMALL_TRAINING

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN = "an-admin-password-4e1f"
ROLES = ("ingest", "train", "serve")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-auth")
    server = MlflowServer(root, admin_password=ADMIN).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def accounts(server, tmp_path_factory):
    """The three roles' accounts, set up twice: the second run must change nothing."""
    folder = tmp_path_factory.mktemp("accounts")
    for role in ROLES:
        (folder / role).mkdir()
        (folder / role / "username").write_text(f"petr4-{role}\n")
        (folder / role / "password").write_text(f"{role}-{uuid.uuid4().hex}\n")
    admin = {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": ADMIN,
    }
    for run in range(2):
        done = run_cli(["petr4-accounts", "--accounts-dir", str(folder)], admin)
        assert done.returncode == 0, done.stderr
        assert ("created" if run == 0 else "password set") in done.stdout
    return {role: env_of(server, folder, role) for role in ROLES}


def env_of(server, folder, role: str) -> dict:
    return {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_TRACKING_USERNAME": (folder / role / "username").read_text().strip(),
        "MLFLOW_TRACKING_PASSWORD": (folder / role / "password").read_text().strip(),
    }


def attempt(env: dict, code: str) -> str:
    """Run ``code`` with an MLflow client as the user of ``env``: OK, or the refusal."""
    probe = (
        "import sys\n"
        "from mlflow import MlflowClient\n"
        "from mlflow.exceptions import MlflowException\n"
        "client = MlflowClient()\n"
        "try:\n"
        f"    {code}\n"
        "    print('OK')\n"
        "except MlflowException as exc:\n"
        "    print(exc.error_code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]


@pytest.fixture(scope="module")
def trained(accounts, tmp_path_factory):
    """Prices ingested as the ingestion user, a model trained and registered as the trainer."""
    ticker = f"A{uuid.uuid4().hex[:5].upper()}.SA"
    csv = tmp_path_factory.mktemp("prices") / "prices.csv"
    SyntheticSource(seed=3, first_date=date(2021, 1, 4), end=date(2023, 12, 29)).fetch(
        ticker, None
    ).to_csv(csv)
    done = run_cli(
        ["petr4-ingest", "--tickers", ticker, "--source", f"csv:{csv}"], accounts["ingest"]
    )
    assert done.returncode == 0, done.stderr
    done = run_cli(
        ["petr4-train", "--ticker", ticker, *SMALL_TRAINING, "--champion-tolerance", "1"],
        accounts["train"],
    )
    assert done.returncode == 0, done.stderr
    assert f"registered lstm-{ticker} version 1; alias 'champion' moved" in done.stdout
    return ticker


def test_health_is_open_and_nothing_else_is(server):
    with urllib.request.urlopen(f"{server.uri}/health") as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1")
    assert refused.value.code == 401


def test_the_trainer_registers_and_moves_the_alias(accounts, trained):
    name = f"lstm-{trained}"
    done = attempt(
        accounts["train"], f"client.set_registered_model_alias('{name}', 'champion', '1')"
    )
    assert done == "OK"


def test_the_predictor_reads_models_and_prices_and_may_change_nothing(accounts, trained, tmp_path):
    name = f"lstm-{trained}"
    serve = accounts["serve"]
    process = PredictorProcess(tmp_path, serve, "--tickers", trained)
    try:
        process.start().wait_serving(120)  # the champion's folder and the snapshot, as READ
    finally:
        process.stop()
    assert attempt(serve, f"client.set_registered_model_alias('{name}', 'champion', '1')") == (
        "PERMISSION_DENIED"
    )
    run_id = f"client.get_model_version('{name}', '1').run_id"
    register = f"client.create_model_version('{name}', 'runs:/' + {run_id} + '/model', {run_id})"
    assert attempt(serve, register) == "PERMISSION_DENIED"


def test_ingestion_cannot_register_a_model(accounts, trained):
    name = f"lstm-{trained}"
    run_id = f"client.get_model_version('{name}', '1').run_id"
    register = f"client.create_model_version('{name}', 'runs:/x/model', 'x')"
    assert attempt(accounts["ingest"], register) == "PERMISSION_DENIED"
    assert attempt(accounts["ingest"], f"print({run_id})") == "PERMISSION_DENIED"  # nor read one


def test_a_wrong_password_is_one_line(server, accounts):
    env = accounts["train"] | {"MLFLOW_TRACKING_PASSWORD": "wrong"}
    done = run_cli(["petr4-train", "--ticker", "PETR4.SA"], env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"petr4-train: MLflow at {server.uri} refused the credentials of "
        "MLFLOW_TRACKING_USERNAME=petr4-train (HTTP 401): is the user set up, and the password right?"
    )


def test_a_job_may_wait_for_its_user_to_be_set_up(server):
    """--mlflow-wait-seconds: refused credentials are asked again until the deadline."""
    env = {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_TRACKING_USERNAME": "nobody-yet",
        "MLFLOW_TRACKING_PASSWORD": "x",
    }
    started = time.monotonic()
    done = run_cli(["petr4-ingest", "--dry-run", "--mlflow-wait-seconds", "5"], env, timeout=60)
    assert done.returncode == 1 and "refused the credentials" in done.stderr
    assert time.monotonic() - started >= 4  # it asked again, and again, before it gave up


def test_a_changed_password_is_refused_once_the_credential_cache_time_has_passed(tmp_path):
    """The chart's credential cache: a checked password is trusted for credentialCacheSeconds,
    so a changed one is refused at the latest once that time has passed (sooner on the
    replica that changed it), and the new one is taken at once."""
    import requests

    cache_seconds = 2
    server = MlflowServer(
        tmp_path, admin_password=ADMIN, credential_cache_seconds=cache_seconds
    ).start()
    try:
        admin = requests.Session()
        admin.auth = ("admin", ADMIN)
        user = {"username": "petr4-cached", "password": "the-first-password"}
        admin.post(f"{server.uri}/api/2.0/mlflow/users/create", json=user).raise_for_status()

        def status(password: str) -> int:
            who = ("petr4-cached", password)
            return requests.get(f"{server.uri}/api/2.0/mlflow/users/current", auth=who).status_code

        assert status("the-first-password") == 200  # checked once: trusted from now on
        changed = user | {"password": "the-second-password"}
        admin.patch(f"{server.uri}/api/2.0/mlflow/users/update-password", json=changed)
        time.sleep(cache_seconds + 1)  # what the cache promises is "after this long, never"
        assert status("the-first-password") == 401
        assert status("the-second-password") == 200
    finally:
        server.stop()
