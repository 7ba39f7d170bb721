"""The model card: the one reader and writer of a model's metadata.json."""

from __future__ import annotations

import json

import pytest

from services.core.features import TARGET
from services.core.model_card import ModelCard, TickerFit
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
    assert card.trained_on == ["PETR4.SA"]
    fit = card.fit_for("PETR4.SA")
    assert fit.calibration == Calibration(shrink=0.0, widen=0.1375)
    assert fit.data.last_date == "2024-12-30" and fit.data.snapshot_run_id == "aa49d01d"
    assert fit.finite_metrics("naive") == {"mae_brl": 0.4516}  # NaN left out
    with pytest.raises(KeyError, match=r"trained on PETR4\.SA, not VALE3\.SA"):
        card.fit_for("VALE3.SA")


def test_a_card_reads_back_what_it_wrote(tmp_path):
    card = ModelCard.model_validate(EARLIER_CARD)
    card.write(tmp_path)
    again = ModelCard.read(tmp_path)
    assert again.model_dump(exclude={"tickers"}) == card.model_dump(exclude={"tickers"})
    assert again.fit_for("PETR4.SA").metrics["lstm"] == card.fit_for("PETR4.SA").metrics["lstm"]


def test_a_pooled_card_holds_each_tickers_own_fit(tmp_path):
    fits = {
        "PETR4.SA": TickerFit(calibration=Calibration(0.0, 0.1)),
        "VALE3.SA": TickerFit(calibration=Calibration(0.0, 0.3)),
    }
    ModelCard(window=60, tickers=fits).write(tmp_path)
    card = ModelCard.read(tmp_path)
    assert card.trained_on == ["PETR4.SA", "VALE3.SA"]
    assert card.fit_for("VALE3.SA").calibration.widen == 0.3
    with pytest.raises(KeyError, match=r"trained on PETR4\.SA, VALE3\.SA, not ITUB4\.SA"):
        card.fit_for("ITUB4.SA")


def test_a_card_that_names_no_ticker_serves_any():
    card = ModelCard(window=10, calibration=Calibration(0.5, 0.2))
    assert card.trained_on == [] and card.fit_for("ANY3.SA").calibration == Calibration(0.5, 0.2)


@pytest.mark.parametrize("quantiles", [[0.1, 0.9], [0.9, 0.5, 0.1], [0.2, 0.4, 0.8]])
def test_quantiles_must_be_sorted_and_odd_around_the_median(quantiles):
    with pytest.raises(ValueError, match=r"must be sorted and odd in number around 0\.5"):
        ModelCard(window=10, quantiles=quantiles)
