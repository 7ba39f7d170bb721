"""petr4-accounts: set up each component's MLflow user, with least privilege, as MLflow's admin.

Idempotent, so the chart runs it at every install and upgrade: a user that exists gets the
password its Secret holds now (a rotation), a permission that exists gets the level the
table below gives it. MLflow's default permission is NO_PERMISSIONS, so a user can do
exactly what this table grants and what it creates itself (MLflow gives a creator MANAGE).

  petr4-accounts --accounts-dir /etc/petr4/accounts    one folder per role: username, password
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import requests
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core import tracking
from services.core.logging import configure_logging
from services.core.naming import PRICES_EXPERIMENT, TRAINING_EXPERIMENT
from services.core.settings import parse_settings
from services.core.tracking import MlflowSettings

log = logging.getLogger("services.accounts")

EVERY_MODEL = "*"  # MLflow's pattern for every registered model
# Each role's grants: experiments by the setting that names them, then registered models.
# Only training may register a version or move an alias; the retraining receiver has no user.
GRANTS = {
    "ingest": {"experiments": {"prices": "EDIT"}, "models": None},
    "train": {"experiments": {"prices": "READ", "training": "EDIT"}, "models": "EDIT"},
    "serve": {"experiments": {"prices": "READ", "training": "READ"}, "models": "READ"},
}


class AccountsSettings(MlflowSettings):
    """petr4-accounts' settings; MLflow's credentials (its environment or its file) are the
    admin's."""

    model_config = SettingsConfigDict(env_prefix="PETR4_ACCOUNTS_")

    accounts_dir: Path = Field(
        Path("/etc/petr4/accounts"),
        description="one folder per role (ingest, train, serve) holding its username and password",
    )
    prices_experiment: str = Field(PRICES_EXPERIMENT, description="the snapshots' experiment")
    training_experiment: str = Field(TRAINING_EXPERIMENT, description="the trainings' experiment")
    log_level: str = Field("INFO", description="logging level")
    json_logs: bool = Field(False, description="log one JSON object per line")


class MlflowAdmin:
    """The few REST calls of MLflow's user and permission API, as the admin."""

    def __init__(self, settings: AccountsSettings):
        self.uri = settings.tracking_uri.rstrip("/")
        from mlflow.utils.credentials import read_mlflow_creds  # the environment, or its file

        credentials = read_mlflow_creds()
        self.session = requests.Session()
        self.session.auth = (credentials.username or "", credentials.password or "")
        self.timeout = settings.mlflow_timeout_seconds

    def call(self, method: str, path: str, allow: tuple[int, ...] = (), **kwargs) -> dict:
        response = self.session.request(method, self.uri + path, timeout=self.timeout, **kwargs)
        if response.status_code in allow:
            return {"status": response.status_code}
        if response.status_code != 200:
            raise RuntimeError(
                f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}"
            )
        return response.json() if response.content else {}

    def experiment_id(self, name: str) -> str:
        """The experiment's id, creating it (as the admin) when it does not exist yet."""
        found = self.call(
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name",
            (404,),
            params={"experiment_name": name},
        )
        if "experiment" in found:
            return found["experiment"]["experiment_id"]
        return self.call("POST", "/api/2.0/mlflow/experiments/create", json={"name": name})[
            "experiment_id"
        ]

    def user(self, username: str, password: str) -> str:
        created = self.call(
            "POST",
            "/api/2.0/mlflow/users/create",
            (400, 409),
            json={"username": username, "password": password},
        )
        if "status" not in created:
            return "created"
        self.call(
            "PATCH",
            "/api/2.0/mlflow/users/update-password",
            json={"username": username, "password": password},
        )
        return "password set"

    def grant(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        """Exactly ``permission`` on the resource: granted, or put right if it differs."""
        key = {"username": username, "resource_type": resource_type, "resource_id": resource_id}
        current = self.call("GET", "/api/3.0/mlflow/users/permissions/get", params=key)
        if current.get("permission") == permission:
            return
        self.call("POST", "/api/3.0/mlflow/users/permissions/revoke", (400, 404), json=key)
        self.call(
            "POST", "/api/3.0/mlflow/users/permissions/grant", json=key | {"permission": permission}
        )


def role_account(folder: Path, role: str) -> tuple[str, str]:
    username = (folder / role / "username").read_text().strip()
    password = (folder / role / "password").read_text().strip()
    if not username or not password:
        raise ValueError(f"{folder / role}: an empty username or password")
    return username, password


def set_up(settings: AccountsSettings) -> list[str]:
    """Every role's user and grants; one line each of what was done."""
    admin = MlflowAdmin(settings)
    experiments = {
        "prices": admin.experiment_id(settings.prices_experiment),
        "training": admin.experiment_id(settings.training_experiment),
    }
    done = []
    for role, grants in GRANTS.items():
        username, password = role_account(settings.accounts_dir, role)
        what = admin.user(username, password)
        for experiment, permission in grants["experiments"].items():
            admin.grant(username, "experiment", experiments[experiment], permission)
        if grants["models"]:
            admin.grant(username, "registered_model", EVERY_MODEL, grants["models"])
        given = [f"{p} on {e}" for e, p in grants["experiments"].items()]
        given += [f"{grants['models']} on every registered model"] if grants["models"] else []
        done.append(f"{role}: user {username} ({what}): {', '.join(given)}")
    return done


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(AccountsSettings, argv, "petr4-accounts", __doc__)
    configure_logging(settings.log_level, settings.json_logs)
    tracking.connect(settings, "petr4-accounts")
    try:
        for line in set_up(settings):
            print(line, flush=True)
    except (OSError, ValueError, RuntimeError, requests.RequestException) as exc:
        print(f"petr4-accounts: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
