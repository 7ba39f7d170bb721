"""One registered model per ticker; the ``champion`` alias moves only on a proven improvement."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services.core.forecaster import ForecastModel
from services.core.naming import CHAMPION_ALIAS
from services.core.scoring import AgainstNaive, against_naive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    champion_mae: float | None = None


def current_champion(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None


def champion_mae(
    name: str, version: str, prices: pd.DataFrame, anchors: pd.DatetimeIndex, actual: np.ndarray
) -> float:
    """The champion's MAE recomputed on exactly these test days, from its served artifacts."""
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=folder)
        forecasts = ForecastModel(local).forecast(prices, anchors)
    if not forecasts.anchor_dates.equals(anchors):
        raise ValueError(f"champion {name} v{version} cannot forecast every test day")
    return against_naive(forecasts.median, actual, forecasts.last_close).mae


def decide(
    client: MlflowClient,
    name: str,
    scored: AgainstNaive,
    prices: pd.DataFrame,
    anchors: pd.DatetimeIndex,
    actual: np.ndarray,
    tolerance: float = 0.0,
) -> Decision:
    """Promote when the new MAE is at most the naive MAE and the champion's, on the same days."""
    new_mae, naive_mae = scored.mae, scored.naive_mae
    if new_mae > naive_mae * (1 + tolerance):
        return Decision(
            False, f"MAE R$ {new_mae:.4f} is worse than the naive forecast's R$ {naive_mae:.4f}"
        )
    champion = current_champion(client, name)
    if champion is None:
        return Decision(True, f"first champion: MAE R$ {new_mae:.4f} <= naive R$ {naive_mae:.4f}")
    old = champion_mae(name, champion.version, prices, anchors, actual)
    if new_mae > old * (1 + tolerance):
        return Decision(
            False,
            f"MAE R$ {new_mae:.4f} is worse than champion v{champion.version}'s R$ {old:.4f} "
            "on the same test days",
            old,
        )
    return Decision(
        True,
        f"MAE R$ {new_mae:.4f} <= champion v{champion.version}'s R$ {old:.4f} "
        f"and naive R$ {naive_mae:.4f}",
        old,
    )


def register(
    client: MlflowClient,
    name: str,
    run_id: str,
    source: str,
    tags: dict[str, str],
    decision: Decision,
) -> str:
    """Register the run's model folder as a new version and move the alias if decided."""
    try:
        client.create_registered_model(name, description="Next-day close forecaster (LSTM, ONNX)")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags).version
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    log.info(
        "registered %s v%s; champion %s: %s",
        name,
        version,
        "moved" if decision.promote else "kept",
        decision.reason,
    )
    return version
