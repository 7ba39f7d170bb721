"""Writes MLflow's basic-auth configuration: the chart's init step.

The user store lives beside the runs (MLFLOW_AUTH_DATABASE_URI, from the backend's Secret or
the SQLite file on the volume), nobody may do anything without a grant, and the admin's
password is read from the file its Secret mounts (MLFLOW_AUTH_ADMIN_PASSWORD_FILE): MLflow
takes it from here the first time its user store is empty. A credential checked once is
trusted for MLFLOW_AUTH_CACHE_TTL_SECONDS (0: never): a password's scrypt check costs about
100 ms, paid up to three times a request. Percent signs are doubled: MLflow reads the file
with configparser's interpolation, and a URL-encoded password has them.
"""

import configparser
import os
import sys
from pathlib import Path


def escaped(text: str) -> str:
    return text.replace("%", "%%")


password = Path(os.environ["MLFLOW_AUTH_ADMIN_PASSWORD_FILE"]).read_text(encoding="utf-8")
config = configparser.ConfigParser(interpolation=None)
config["mlflow"] = {
    "default_permission": "NO_PERMISSIONS",
    "database_uri": escaped(os.environ["MLFLOW_AUTH_DATABASE_URI"]),
    "admin_username": "admin",
    "admin_password": escaped(password.strip()),
    "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    "auth_cache_ttl_seconds": str(int(os.environ.get("MLFLOW_AUTH_CACHE_TTL_SECONDS", "0"))),
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    config.write(handle)
