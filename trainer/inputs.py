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


def load_prices(
    settings: TrainSettings, store: SnapshotStore
) -> tuple[dict[str, pd.DataFrame], dict[str, Lineage]]:
    """Every ticker's prices and where they came from; DataError, before anything is
    trained, names every ticker without a snapshot."""
    if settings.data is not None:
        frame = read_price_csv(settings.data)
        lineages = {
            settings.ticker: Lineage(
                "file", str(settings.data.resolve()), sha256_file(settings.data), False
            )
        }
        frames = {settings.ticker: frame}
    else:
        universe = settings.universe
        snapshots = store.latest_of(universe)
        missing = [t for t in universe if t not in snapshots]
        if missing:
            raise DataError(
                f"no snapshot of {', '.join(missing)} in MLflow experiment '{store.experiment}': "
                f"run petr4-ingest --tickers {' '.join(missing)} first"
                + (", or pass --data PATH.csv" if len(universe) == 1 else "")
            )
        frames = {t: store.load(s) for t, s in snapshots.items()}
        lineages = {
            t: Lineage("snapshot", s.artifact_path, s.sha256, s.synthetic, s.run_id)
            for t, s in snapshots.items()
        }
    # Non-finite or inconsistent rows stop here.
    prices = {t: validate_prices(frame, t)[0] for t, frame in frames.items()}
    return prices, lineages


def dataset_inputs(prices: dict[str, pd.DataFrame], lineages: dict[str, Lineage]) -> None:
    """Each ticker's prices as an MLflow dataset input of the active run (name, digest and a
    URL that fetches them), logged in one request."""
    datasets = [dataset_input(prices[t], lineages[t], t) for t in prices]
    mlflow.log_inputs(
        datasets=datasets,
        contexts=["training"] * len(datasets),
        tags_list=[{"snapshot_run_id": lineages[t].snapshot_run_id or "none"} for t in prices],
    )


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
    settings: TrainSettings,
    prices: dict[str, pd.DataFrame],
    lineages: dict[str, Lineage],
    folds: list[PriceDataModule],
) -> dict:
    """Data and training parameters; the network's own come from Lightning's hyperparameters.
    Splits are the shipped model's, the last fold's; a one-ticker run also names its data's
    digest and scaler (a pooled run's are in its dataset inputs and its scalers.json)."""
    dm = folds[-1]
    params = {
        "tickers": ",".join(prices),
        "ticker_count": len(prices),
        "window": settings.window,
        "features": ",".join(FEATURES),
        "target": TARGET,
        "data_first_date": min(p.index[0] for p in prices.values()).strftime("%Y-%m-%d"),
        "data_last_date": max(p.index[-1] for p in prices.values()).strftime("%Y-%m-%d"),
        "data_rows": sum(len(p) for p in prices.values()),
        "data_source": next(iter(lineages.values())).source,
        **dm.splits.to_params(),
        "folds": len(folds),
        "walk_forward_test_start": folds[0].splits.test[0].strftime("%Y-%m-%d"),
        "calibration": settings.calibration,
        "adaptive_step": settings.adaptive_step,
        "batch_size": settings.batch_size,
        "max_epochs": settings.max_epochs,
        "patience": settings.patience,
        "seed": settings.seed,
    }
    if len(prices) == 1:
        ((ticker, lineage),) = lineages.items()
        series = dm.series[ticker]
        params |= {
            "ticker": ticker,
            "data_sha256": lineage.sha256,
            "snapshot_run_id": lineage.snapshot_run_id or "none",
            "scaler_fitted_through": series.scaler.fitted_through,
            "target_center_removed": series.center,
        }
    return params
