"""The model card: the one reader and writer of a model's metadata.json."""

from __future__ import annotations

import json

import pytest

from services.core.features import TARGET
from services.core.model_card import ModelCard
from services.core.quantiles import Calibration

pytestmark = pytest.mark.unit

# A metadata.json as the trainer wrote it before the card existed (lstm-PETR4.SA v1).
EARLIER_CARD = {
    "ticker": "PETR4.SA",
    "window": 60,
    "bars_needed": 80,
    "features": ["log_return", "log_range", "log_body", "log_volume_ratio"],
    "target": TARGET,
    "quantiles": [0.1, 0.5, 0.9],
    "interval_level": 0.8,
    "calibration": {"shrink": 0.0, "widen": 0.1375},
    "onnx_max_abs_diff": 1.1e-07,
    "trained_at": "2026-11-27T10:00:00+00:00",
    "run_id": "33eeb9c8",
    "model_name": "lstm-PETR4.SA",
    "data": {
        "first_date": "2000-01-03",
        "last_date": "2024-12-30",
        "source": "snapshot",
        "sha256": "ab" * 32,
        "synthetic": False,
        "snapshot_run_id": "aa49d01d",
    },
    "splits": {"train_start": "2000-04-03", "test_end": "2024-12-30"},
    "best_epoch_val_loss": 0.41,
    "epochs": 34,
    "metrics": {
        "lstm": {"mae_brl": 0.4516, "mae_ratio_naive": 1.0, "coverage": 0.849},
        "naive": {"mae_brl": 0.4516, "directional_accuracy": float("nan")},
    },
}


def test_cards_written_before_the_card_existed_still_load(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps(EARLIER_CARD))
    card = ModelCard.read(tmp_path)
    assert card.window == 60 and card.warmup == 20 and card.bars_needed == 80
    assert card.features == ("log_return", "log_range", "log_body", "log_volume_ratio")
    assert card.interval_level == pytest.approx(0.8)
    assert card.calibration == Calibration(shrink=0.0, widen=0.1375)
    assert card.data.last_date == "2024-12-30" and card.data.snapshot_run_id == "aa49d01d"
    assert card.finite_metrics("naive") == {"mae_brl": 0.4516}  # NaN left out


def test_a_card_reads_back_what_it_wrote(tmp_path):
    card = ModelCard.model_validate(EARLIER_CARD)
    card.write(tmp_path)
    again = ModelCard.read(tmp_path)
    assert again.model_dump(exclude={"metrics"}) == card.model_dump(exclude={"metrics"})
    assert again.metrics["lstm"] == card.metrics["lstm"]


@pytest.mark.parametrize("quantiles", [[0.1, 0.9], [0.9, 0.5, 0.1], [0.2, 0.4, 0.8]])
def test_quantiles_must_be_sorted_and_odd_around_the_median(quantiles):
    with pytest.raises(ValueError, match=r"must be sorted and odd in number around 0\.5"):
        ModelCard(window=10, quantiles=quantiles)
