"""Immutable price snapshots in MLflow: one FINISHED run per committed snapshot.

A snapshot run lives in the prices experiment, is tagged with its ticker, and holds
``prices/<ticker>.parquet`` with ``prices/metadata.json``. The run is marked FINISHED
only after both artifacts are written, so a crashed or killed ingestion leaves a
RUNNING or FAILED run that the reader never returns.

Once a snapshot is FINISHED, the experiment's tag ``latest-snapshot/<ticker>`` points to it
(a ref, as in git): readers learn every ticker's latest snapshot from one request, however
many tickers there are. Snapshots committed before the pointers existed are found by a
search, one per ticker, until the next ingestion sets their pointer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import RunStatus

from services.core.naming import PRICES_EXPERIMENT
from services.core.prices import PRICE_COLUMNS

log = logging.getLogger(__name__)

__all__ = ["LATEST_TAG", "PRICES_EXPERIMENT", "Snapshot", "SnapshotStore", "sha256_file"]

SNAPSHOT_KIND = "price-snapshot"
LATEST_TAG = "latest-snapshot/"  # + ticker: the experiment's pointer to its latest snapshot


@dataclass(frozen=True)
class Snapshot:
    """What a committed snapshot is, without its rows."""

    run_id: str
    ticker: str
    rows: int
    first_date: str
    last_date: str
    sha256: str
    source: str
    synthetic: bool

    @property
    def artifact_path(self) -> str:
        return f"prices/{self.ticker}.parquet"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls(**json.loads(text))


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class SnapshotStore:
    """Commits price frames as snapshot runs and reads back the latest FINISHED one."""

    def __init__(self, client: MlflowClient | None = None, experiment: str = PRICES_EXPERIMENT):
        self.client = client or MlflowClient()
        self.experiment = experiment
        self._experiment_id: str | None = None

    def _experiment(self, create: bool) -> str | None:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                self._experiment_id = found.experiment_id
            elif create:
                self._experiment_id = self.client.create_experiment(self.experiment)
        return self._experiment_id

    def latest(self, ticker: str) -> Snapshot | None:
        """The most recently committed snapshot of ``ticker``; None when there is none."""
        return self.latest_of([ticker]).get(ticker)

    def latest_of(self, tickers: list[str]) -> dict[str, Snapshot]:
        """Each of ``tickers``' latest committed snapshot, leaving out those with none: one
        request for every ticker with a pointer, a search for each without."""
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            return {}
        self._experiment_id = experiment.experiment_id
        found = {}
        for ticker in tickers:
            pointer = experiment.tags.get(LATEST_TAG + ticker)
            snapshot = Snapshot.from_json(pointer) if pointer else self._search(ticker)
            if snapshot is not None:
                found[ticker] = snapshot
        return found

    def _search(self, ticker: str) -> Snapshot | None:
        runs = self.client.search_runs(
            [self._experiment_id],
            filter_string=(
                f"tags.ticker = '{ticker}' and tags.kind = '{SNAPSHOT_KIND}' "
                "and attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.end_time DESC"],
            max_results=1,
        )
        if not runs:
            return None
        tags = runs[0].data.tags
        return Snapshot(
            run_id=runs[0].info.run_id,
            ticker=ticker,
            rows=int(tags["rows"]),
            first_date=tags["first_date"],
            last_date=tags["last_date"],
            sha256=tags["sha256"],
            source=tags["source"],
            synthetic=tags["synthetic"] == "true",
        )

    def point_to(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` its ticker's latest: it must be a FINISHED snapshot run."""
        experiment_id = self._experiment(create=True)
        self.client.set_experiment_tag(
            experiment_id, LATEST_TAG + snapshot.ticker, snapshot.to_json()
        )

    def load(self, snapshot: Snapshot, cache_dir: str | Path | None = None) -> pd.DataFrame:
        """The snapshot's rows, checked against its sha256.

        With ``cache_dir`` a verified copy is kept there and reused: snapshots never change.
        """
        if cache_dir is None:
            with tempfile.TemporaryDirectory() as tmp:
                return pd.read_parquet(self._download(snapshot, Path(tmp)))
        cached = Path(cache_dir) / snapshot.run_id / Path(snapshot.artifact_path).name
        if cached.is_file() and sha256_file(cached) == snapshot.sha256:
            return pd.read_parquet(cached)
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Downloaded beside its destination: a rename across file systems fails, and in a
        # pod the cache and /tmp are two volumes.
        with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
            self._download(snapshot, Path(tmp)).replace(cached)
        return pd.read_parquet(cached)

    def _download(self, snapshot: Snapshot, folder: Path) -> Path:
        """The snapshot's Parquet file, downloaded into ``folder`` and verified."""
        local = Path(
            self.client.download_artifacts(snapshot.run_id, snapshot.artifact_path, folder)
        )
        digest = sha256_file(local)
        if digest != snapshot.sha256:
            raise OSError(
                f"snapshot {snapshot.run_id} of {snapshot.ticker} is corrupted: "
                f"sha256 {digest} != recorded {snapshot.sha256}"
            )
        return local

    def commit(
        self, ticker: str, frame: pd.DataFrame, source: str, synthetic: bool, note: str = ""
    ) -> Snapshot:
        """Write ``frame`` as a new snapshot; the run is FINISHED only once it is whole."""
        experiment_id = self._experiment(create=True)
        frame = frame.loc[:, list(PRICE_COLUMNS)]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "prices"
            folder.mkdir()
            parquet = folder / f"{ticker}.parquet"
            frame.to_parquet(parquet, index=True)
            snapshot_fields = {
                "ticker": ticker,
                "rows": len(frame),
                "first_date": frame.index[0].strftime("%Y-%m-%d"),
                "last_date": frame.index[-1].strftime("%Y-%m-%d"),
                "sha256": sha256_file(parquet),
                "source": source,
                "synthetic": synthetic,
            }
            (folder / "metadata.json").write_text(
                json.dumps(
                    {**snapshot_fields, "columns": list(PRICE_COLUMNS), "note": note}, indent=2
                )
            )
            tags = {
                k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in snapshot_fields.items()
            }
            tags |= {"kind": SNAPSHOT_KIND, "mlflow.runName": f"{ticker} {tags['last_date']}"}
            run = self.client.create_run(experiment_id, tags=tags)
            run_id = run.info.run_id
            try:
                self.client.log_artifacts(run_id, str(folder), "prices")
                self.client.log_metric(run_id, "rows", len(frame))
            except BaseException:
                self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
                raise
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
        snapshot = Snapshot(run_id=run_id, **snapshot_fields)
        self.point_to(snapshot)  # a crash before this leaves the pointer on the one before
        log.info("committed snapshot %s", asdict(snapshot))
        return snapshot
