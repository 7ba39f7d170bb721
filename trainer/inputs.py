"""What a training run starts from: the prices, where they came from, and the run's parameters."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.data.http_dataset_source import HTTPDatasetSource

from services.core.features import FEATURES, TARGET
from services.core.model_card import DataLineage
from services.core.prices import read_price_csv, validate_prices
from services.core.snapshots import SnapshotStore, sha256_file
from trainer.data import DataError, PriceDataModule
from trainer.settings import TrainSettings


@dataclass
class Lineage:
    """Where the training prices came from."""

    source: str  # "snapshot" or "file"
    location: str
    sha256: str
    synthetic: bool
    snapshot_run_id: str = ""

    def for_card(self, prices: pd.DataFrame) -> DataLineage:
        return DataLineage(
            first_date=prices.index[0].strftime("%Y-%m-%d"),
            last_date=prices.index[-1].strftime("%Y-%m-%d"),
            source=self.source,
            sha256=self.sha256,
            synthetic=self.synthetic,
            snapshot_run_id=self.snapshot_run_id,
        )


def load_prices(settings: TrainSettings, store: SnapshotStore) -> tuple[pd.DataFrame, Lineage]:
    if settings.data is not None:
        frame = read_price_csv(settings.data)
        lineage = Lineage("file", str(settings.data.resolve()), sha256_file(settings.data), False)
    else:
        snapshot = store.latest(settings.ticker)
        if snapshot is None:
            raise DataError(
                f"no snapshot of {settings.ticker} in MLflow experiment '{store.experiment}': "
                f"run petr4-ingest --tickers {settings.ticker} first, or pass --data PATH.csv"
            )
        frame = store.load(snapshot)
        lineage = Lineage(
            "snapshot", snapshot.artifact_path, snapshot.sha256, snapshot.synthetic, snapshot.run_id
        )
    frame, _ = validate_prices(frame, settings.ticker)  # non-finite or inconsistent rows stop here
    return frame, lineage


def dataset_input(frame: pd.DataFrame, lineage: Lineage, ticker: str):
    """The prices as an MLflow dataset input: name, digest and a URL that fetches them."""
    if lineage.snapshot_run_id and mlflow.get_tracking_uri().startswith("http"):
        source = HTTPDatasetSource(
            f"{mlflow.get_tracking_uri()}/get-artifact?path={lineage.location}&run_uuid={lineage.snapshot_run_id}"
        )
    else:
        source = lineage.location
    with warnings.catch_warnings():
        # MLflow registers two identical local-file sources and warns about its own ambiguity.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return mlflow.data.from_pandas(
            frame.reset_index(), source=source, name=f"{ticker} prices", digest=lineage.sha256[:32]
        )


def run_params(
    settings: TrainSettings, prices: pd.DataFrame, lineage: Lineage, folds: list[PriceDataModule]
) -> dict:
    """Data and training parameters; the network's own come from Lightning's hyperparameters.
    Splits and scaler are the shipped model's, the last fold's."""
    dm = folds[-1]
    return {
        "ticker": settings.ticker,
        "window": settings.window,
        "features": ",".join(FEATURES),
        "target": TARGET,
        "data_first_date": prices.index[0].strftime("%Y-%m-%d"),
        "data_last_date": prices.index[-1].strftime("%Y-%m-%d"),
        "data_rows": len(prices),
        "data_source": lineage.source,
        "data_sha256": lineage.sha256,
        "snapshot_run_id": lineage.snapshot_run_id or "none",
        "scaler_fitted_through": dm.scaler.fitted_through,
        "target_center_removed": dm.target_center,
        **dm.splits.to_params(),
        "folds": len(folds),
        "walk_forward_test_start": folds[0].splits.test[0].strftime("%Y-%m-%d"),
        "batch_size": settings.batch_size,
        "max_epochs": settings.max_epochs,
        "patience": settings.patience,
        "seed": settings.seed,
    }
