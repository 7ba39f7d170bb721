"""The snapshot store against a real MLflow server: its on-disk cache, as pods mount it."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from services.core.snapshots import SnapshotStore
from services.ingestion.sources import SyntheticSource

pytestmark = pytest.mark.integration


@pytest.fixture
def tmp_on_another_file_system(tmp_path, monkeypatch):
    """Python's temporary files on a tmpfs, apart from ``tmp_path``: a pod's /tmp and cache
    folder are two emptyDir volumes, and a rename between them fails."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's tmp_path")
    scratch = Path(tempfile.mkdtemp(dir=shm))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    yield scratch
    shutil.rmtree(scratch, ignore_errors=True)


def test_the_cache_may_live_on_another_file_system_than_tmp(
    mlflow_server, experiment_name, tmp_path, tmp_on_another_file_system
):
    prices = SyntheticSource(seed=3, first_date=date(2023, 1, 2), end=date(2023, 6, 30)).fetch(
        "TEST.SA", None
    )
    store = SnapshotStore(experiment=experiment_name)
    snapshot = store.commit("TEST.SA", prices, "synthetic", synthetic=True)
    cache = tmp_path / "cache"

    loaded = store.load(snapshot, cache)

    cached = cache / snapshot.run_id / "TEST.SA.parquet"
    assert cached.is_file()
    pd.testing.assert_frame_equal(loaded, prices, check_freq=False)
    assert list(cached.parent.iterdir()) == [cached]  # no download left behind
    assert list(tmp_on_another_file_system.iterdir()) == []
    pd.testing.assert_frame_equal(store.load(snapshot, cache), prices, check_freq=False)
