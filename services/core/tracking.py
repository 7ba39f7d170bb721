"""MLflow as every service reaches it: the standard MLFLOW_TRACKING_URI (and, where MLflow has
accounts, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLflow's credentials
file, ~/.mlflow/credentials, which its client reads at every request), and bounded waits.

Left alone, MLflow's client retries a dead server for about four minutes before it raises,
and an unset URI quietly becomes a SQLite file in the working folder. Each service's settings
inherit ``MlflowSettings``; its ``main`` calls ``configure`` (and ``check_reachable`` where
waiting makes no sense), so a wrong or dead URI, or refused credentials, are one line within
the bound. A pod that starts beside the server may wait for it (``--mlflow-wait-seconds``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
WHO_AM_I = "/api/2.0/mlflow/users/current"  # answers only to accepted credentials


class MlflowSettings(BaseSettings):
    """What every MLflow client among the services needs: where it is, how long to wait."""

    # The URI keeps MLflow's standard variable, not the service's prefix; the flag still works.
    model_config = SettingsConfigDict(populate_by_name=True)

    tracking_uri: str = Field(
        "",
        validation_alias=TRACKING_URI_ENV,
        description="the MLflow tracking server, such as http://127.0.0.1:5000 (required)",
    )
    tracking_username: str = Field(
        "", validation_alias=USERNAME_ENV, description="the MLflow user, where MLflow has accounts"
    )
    tracking_password: SecretStr = Field(
        SecretStr(""), validation_alias=PASSWORD_ENV, description="that user's password"
    )
    mlflow_timeout_seconds: float = Field(
        30.0, gt=0, description="how long an unanswering MLflow server may take to fail a call"
    )
    mlflow_wait_seconds: float = Field(
        0.0,
        ge=0,
        description="wait this long for MLflow to answer and accept the credentials before "
        "giving up (a pod starting beside the server); 0 asks once",
    )


class TrackingUnavailable(RuntimeError):
    """MLflow does not answer; the message says what to check."""


class TrackingNotConfigured(TrackingUnavailable):
    """No tracking URI was given."""


def connect(settings: MlflowSettings, prog: str, check: bool = True) -> str:
    """``configure``, then ``check_reachable`` when ``check``; on failure one line and exit:
    2 when no URI was given (a usage error), 1 when the server does not answer."""
    try:
        uri = configure(settings)
        if check:
            check_reachable(settings)
    except TrackingUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, TrackingNotConfigured) else 1) from None
    return uri


def configure(settings: MlflowSettings) -> str:
    """Point MLflow's client at the server, its HTTP calls bounded by the timeout setting."""
    uri = settings.tracking_uri
    if not uri:
        raise TrackingNotConfigured(
            f"{TRACKING_URI_ENV} is not set: export {TRACKING_URI_ENV}=http://HOST:5000 "
            "(the MLflow server), or pass --tracking-uri"
        )
    timeout = settings.mlflow_timeout_seconds
    # One retry, a short backoff, and a read timeout of the setting: a dead server fails a
    # call in about the setting, not in MLflow's own ~250 s of retries.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(timeout)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    if settings.tracking_username:  # MLflow's client reads its credentials from these
        os.environ[USERNAME_ENV] = settings.tracking_username
        os.environ[PASSWORD_ENV] = settings.tracking_password.get_secret_value()
    import mlflow  # here, not at import: a bad flag is reported before MLflow loads

    mlflow.set_tracking_uri(uri)
    return uri


def check_reachable(settings: MlflowSettings) -> None:
    """The server's health, and the credentials' acceptance where some are given, asked
    until they answer or ``mlflow_wait_seconds`` pass; TrackingUnavailable says what failed."""
    uri = settings.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return  # a local store (sqlite:, file:) has no server to reach
    deadline = time.monotonic() + settings.mlflow_wait_seconds
    while True:
        problem = _problem(settings)
        if problem is None:
            return
        if time.monotonic() + 2 > deadline:
            raise TrackingUnavailable(problem)
        time.sleep(2)


def _problem(settings: MlflowSettings) -> str | None:
    uri = settings.tracking_uri.rstrip("/")
    reason = _ask(f"{uri}/health", settings)
    if reason is not None:
        return (
            f"MLflow at {settings.tracking_uri} is unreachable ({reason}): is the server running, "
            f"and is {TRACKING_URI_ENV} right?"
        )
    from mlflow.utils.credentials import read_mlflow_creds  # the environment, or its file

    credentials = read_mlflow_creds()
    if not credentials.username:
        return None
    reason = _ask(f"{uri}{WHO_AM_I}", settings, (credentials.username, credentials.password))
    if reason in (None, "HTTP 404"):  # 404: a server without accounts takes anyone
        return None
    return (
        f"MLflow at {settings.tracking_uri} refused the credentials of {USERNAME_ENV}="
        f"{credentials.username} ({reason}): is the user set up, and the password right?"
    )


def _ask(url: str, settings: MlflowSettings, credentials: tuple | None = None) -> str | None:
    """None when ``url`` answers 200, else why not."""
    request = urllib.request.Request(url)
    if credentials:
        pair = ":".join(str(part or "") for part in credentials)
        request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=settings.mlflow_timeout_seconds) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        cause = getattr(exc, "reason", exc)
        if isinstance(cause, socket.timeout | TimeoutError):
            return f"no answer within {settings.mlflow_timeout_seconds:g} s"
        return str(getattr(cause, "strerror", None) or cause)


def describe(error: Exception, uri: str) -> str:
    """One line for an MLflow client error met halfway through a run: what the server
    answered, or that it did not."""
    text = str(error)
    answered = re.search(r"too many (\d{3}) error responses", text)
    if answered:  # an answer, the same at every try: the server's own error, not its absence
        path = re.search(r"url: (\S+?)[ (]", text)
        where = f" to {path.group(1)}" if path else ""
        return f"MLflow at {uri} answered HTTP {answered.group(1)}{where}, at every try"
    answered = re.search(r"endpoint (\S+) failed with error code (\d{3}) != 200", text)
    if answered:  # an answer to a call made once
        said = re.search(r"Response body: '(.*)'", text, re.DOTALL)
        body = f": {said.group(1).strip()[:240]}" if said else ""
        return f"MLflow at {uri} answered HTTP {answered.group(2)} to {answered.group(1)}{body}"
    for marker, reason in (
        ("Connection refused", "connection refused"),
        ("timed out", "no answer in time"),
        ("Name or service not known", "unknown host"),
        ("Max retries exceeded", "no answer"),
    ):
        if marker in text:
            return f"MLflow at {uri} stopped answering ({reason}): is the server running?"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"MLflow at {uri} failed a call: {first[:240]}"


def lost_answer(error: BaseException) -> bool:
    """An MLflow call whose answer never came back: the connection was refused, reset or
    closed before the server answered (a replica of it gone mid-call, say)."""
    import requests
    from mlflow.exceptions import MlflowException

    cause = error.__cause__ or error.__context__
    return isinstance(error, MlflowException) and isinstance(
        cause, requests.exceptions.ConnectionError
    )


@contextlib.contextmanager
def _no_blind_retries():
    """MLflow's client before 3.18 repeats any call once, POSTs included, whatever happened
    to the first: a version whose answer was lost would be registered twice. Here it does not."""
    before = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = before


def surviving_lost_answers(call, done=None, attempts: int = 5, pause_seconds: float = 1.0):
    """``call()``, repeated while its answer is lost on the way. A call that changes something
    is repeated only once ``done()`` finds no trace of it: ``done`` returns what the call
    would have returned, had it happened, or None. Any other error is raised at once."""
    attempt = 1
    while True:
        try:
            with _no_blind_retries():
                return call()
        except Exception as error:
            if not lost_answer(error) or attempt == attempts:
                raise
        time.sleep(pause_seconds * attempt)
        attempt += 1
        if done is not None:
            found = surviving_lost_answers(done, attempts=attempts, pause_seconds=pause_seconds)
            if found is not None:
                return found
