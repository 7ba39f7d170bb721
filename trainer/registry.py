"""One registered model per ticker; the ``champion`` alias moves only on proven evidence.

The evidence is the candidate's walk-forward record of that ticker: its median must be no
worse than the naive forecast there, and its interval no worse than the ticker's champion's
on the same days, the champion's forecasts for them being ones it made without having seen
the day. A pooled run registers a version for each of its tickers, each judged on its own.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services.core.forecaster import ArtifactError, ForecastModel, Forecasts
from services.core.naming import CHAMPION_ALIAS, registered_model_name
from services.core.scoring import against_naive, interval_scores
from services.core.tracking import surviving_lost_answers
from trainer.data import target_dates

log = logging.getLogger(__name__)

RECORD = "reports/test_predictions.csv"  # a run's walk-forward forecasts, one row per test day


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    champion_interval_score: float | None = None


def ensure_registered(client: MlflowClient, name: str) -> None:
    """The registered model, created (empty: no version, no alias) where it is not yet. Its
    champion is asked for only after this: MLflow's accounts refuse a user what it asks of a
    model that does not exist (403), which says nothing about a champion."""
    try:
        surviving_lost_answers(
            lambda: client.create_registered_model(
                name, description="Next-day close forecaster (LSTM, ONNX)"
            )
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def current_champion(client: MlflowClient, name: str):
    """The version the alias names; None only where the registry says there is none (no
    such model, or no such alias). Any other answer is raised: a registry that cannot say
    must not be read as "no champion", which would promote on the median alone."""
    try:
        return surviving_lost_answers(
            lambda: client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        )
    except MlflowException as exc:
        no_alias = exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in exc.message
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or no_alias:
            return None
        raise


class Champions:
    """Champions' served models and walk-forward records, fetched once per run for a whole
    registration pass: a pooled champion serves every ticker of a pooled candidate."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._models: dict[str, ForecastModel] = {}
        self._records: dict[str, pd.DataFrame] = {}

    def model(self, name: str, version: str, run_id: str) -> ForecastModel:
        key = run_id or f"{name}/{version}"
        if key not in self._models:
            local = mlflow.artifacts.download_artifacts(
                f"models:/{name}/{version}",
                dst_path=str(self.folder / f"model-{len(self._models)}"),
            )
            self._models[key] = ForecastModel(local)
        return self._models[key]

    def record(self, run_id: str, ticker: str) -> pd.DataFrame:
        """A run's walk-forward forecasts of ``ticker`` by anchor date; empty for runs that
        kept none. Records of one-ticker runs before pooled models have no ticker column."""
        if run_id not in self._records:
            self._records[run_id] = _record(run_id, self.folder / f"record-{len(self._records)}")
        record = self._records[run_id]
        if "ticker" in record:
            record = record[record["ticker"] == ticker]
        return record


def _record(run_id: str, folder: Path) -> pd.DataFrame:
    if not run_id:
        return pd.DataFrame()
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=RECORD, dst_path=str(folder)
        )
    except (MlflowException, OSError):
        return pd.DataFrame()
    return pd.read_csv(path, index_col="anchor_date", parse_dates=["anchor_date"])


def out_of_sample(
    name: str,
    version: str,
    ticker: str,
    prices: pd.DataFrame,
    anchors: pd.DatetimeIndex,
    champions: Champions | None = None,
) -> pd.DataFrame:
    """A version's price quantiles (one column per level) for those of ``anchors`` it forecast
    without having seen the day: its run's walk-forward record, then its served model's
    forecasts from its own first test day on. Raises ArtifactError when this code cannot
    serve it."""
    if champions is None:
        with tempfile.TemporaryDirectory() as folder:
            return out_of_sample(name, version, ticker, prices, anchors, Champions(Path(folder)))
    found = MlflowClient().get_model_version(name, version)
    served = champions.model(name, version, found.run_id).for_ticker(ticker)
    record = champions.record(found.run_id, ticker)
    levels = list(served.quantiles)
    # The served model saw nothing from its first test target on (or after its data, for
    # cards that do not say; a card that says neither claims nothing and is taken at its word).
    card = served.card
    if "test_start" in card.splits:
        unseen = target_dates(prices, anchors) >= pd.Timestamp(card.splits["test_start"])
    elif served.fit.data.last_date:
        unseen = target_dates(prices, anchors) > pd.Timestamp(served.fit.data.last_date)
    else:
        unseen = np.ones(len(anchors), dtype=bool)
    frame = pd.DataFrame(columns=levels, dtype="float64")
    if unseen.any():
        forecasts = served.forecast(prices, anchors[unseen])
        frame = pd.DataFrame(forecasts.prices, index=forecasts.anchor_dates, columns=levels)
    if not record.empty:
        columns = [f"forecast_q{round(q * 100):02d}" for q in levels]
        earlier = record.loc[record.index.isin(anchors) & ~record.index.isin(frame.index), columns]
        frame = pd.concat([earlier.set_axis(levels, axis=1), frame]).sort_index()
    return frame


def decide(
    client: MlflowClient,
    ticker: str,
    evidence: Forecasts,
    prices: pd.DataFrame,
    levels,
    tolerance: float = 0.0,
    champions: Champions | None = None,
) -> Decision:
    """Promote when the median's MAE is at most naive's over the ticker's walk-forward test
    days, and the interval score at most its champion's on the days both forecast out of
    sample."""
    name = registered_model_name(ticker)
    scored = against_naive(evidence.median, evidence.actual, evidence.last_close)
    mae, naive = scored.mae, scored.naive_mae
    if mae > naive * (1 + tolerance):
        return Decision(
            False, f"MAE R$ {mae:.4f} is worse than the naive forecast's R$ {naive:.4f}"
        )
    median_ok = f"MAE R$ {mae:.4f} <= naive R$ {naive:.4f}"
    champion = current_champion(client, name)
    if champion is None:
        return Decision(True, f"first champion: {median_ok}")
    version = champion.version
    try:
        theirs = out_of_sample(name, version, ticker, prices, evidence.anchor_dates, champions)
    except ArtifactError as exc:
        return Decision(
            True, f"champion v{version} cannot be served by this code ({exc}); {median_ok}"
        )
    if list(theirs.columns) != list(levels):
        return Decision(
            False,
            f"champion v{version} forecasts the quantiles {list(theirs.columns)}, this version "
            f"{list(levels)}: their intervals do not compare; move the alias by hand if meant",
        )
    same = np.asarray(evidence.anchor_dates.isin(theirs.index))
    if not same.any():
        return Decision(
            False,
            f"no test day in common with champion v{version}'s out-of-sample forecasts: "
            "nothing to compare on",
        )
    alpha = 1.0 - (levels[-1] - levels[0])
    actual = evidence.actual[same]
    ours = evidence.prices[same]
    old_q = theirs.loc[evidence.anchor_dates[same]].to_numpy()
    new = float(np.mean(interval_scores(actual, ours[:, 0], ours[:, -1], alpha)))
    old = float(np.mean(interval_scores(actual, old_q[:, 0], old_q[:, -1], alpha)))
    days = f"on the same {int(same.sum())} test days"
    if new > old * (1 + tolerance):
        return Decision(
            False,
            f"interval score R$ {new:.4f} is worse than champion v{version}'s R$ {old:.4f} {days}",
            old,
        )
    return Decision(
        True,
        f"interval score R$ {new:.4f} <= champion v{version}'s R$ {old:.4f} {days}; {median_ok}",
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
    """Register the run's model folder as a new version and move the alias if decided. Each
    call survives a lost answer (a server replica gone mid-call): the version is looked for
    before it is asked for again, so it is never registered twice."""
    ensure_registered(client, name)

    def registered_already():
        found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        return next((v for v in found if v.source == source), None)

    created = surviving_lost_answers(
        lambda: client.create_model_version(name, source=source, run_id=run_id, tags=tags),
        done=registered_already,
    )
    version = created.version
    if decision.promote:
        surviving_lost_answers(
            lambda: client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        )
    log.info(
        "registered %s v%s; champion %s: %s",
        name,
        version,
        "moved" if decision.promote else "kept",
        decision.reason,
    )
    return version
