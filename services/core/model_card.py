"""What a trained model is, as the ``metadata.json`` beside its ONNX graph says: one typed
record, written by the trainer and read by everything that serves or judges the model.

A model is trained on one ticker or, pooled, on several; the card holds what is shared (the
window, features, quantiles, the folds) once, and what belongs to each ticker (its
calibration, the prices it was trained on, its walk-forward metrics) under that ticker.

Nothing else reads or writes that file. Cards written before pooled models, with one
``ticker`` and its fields at the top, still load as a card of that one ticker; cards older
still, without a warm-up, take it from their ``bars_needed``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.core.features import FEATURES, TARGET, WARMUP
from services.core.quantiles import Calibration

METADATA_FILE = "metadata.json"
_PER_TICKER = ("calibration", "data", "metrics")  # where an earlier card kept them: at the top


class DataLineage(BaseModel):
    """The prices a model was trained on, for one ticker."""

    first_date: str = ""
    last_date: str = ""  # the last day the model saw: later days are out of its sample
    source: str = ""  # "snapshot" or "file"
    sha256: str = ""
    synthetic: bool = False
    snapshot_run_id: str = ""


class TickerFit(BaseModel):
    """What the model holds for one ticker it was trained on."""

    model_config = ConfigDict(extra="ignore", frozen=True, ser_json_inf_nan="constants")

    calibration: Calibration = Calibration()
    data: DataLineage = DataLineage()
    metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="test metrics by forecaster (lstm, naive), pooled over the folds' test days",
    )

    def finite_metrics(self, forecaster: str) -> dict[str, float]:
        """One forecaster's test metrics, leaving out the undefined ones (NaN)."""
        return {k: v for k, v in self.metrics.get(forecaster, {}).items() if math.isfinite(v)}


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, ser_json_inf_nan="constants")

    window: int = Field(ge=1, description="days in each input window")
    warmup: int = Field(WARMUP, description="bars the features consume before their first row")
    features: tuple[str, ...] = FEATURES
    target: str = TARGET
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    tickers: dict[str, TickerFit] = Field(
        default_factory=lambda: {"": TickerFit()},
        description="each ticker the model was trained on; one named '' serves any ticker",
    )
    run_id: str = ""
    trained_at: str = ""
    splits: dict[str, str] = {}
    epochs: int | None = None
    best_epoch_val_loss: float | None = None
    onnx_max_abs_diff: float | None = None
    walk_forward: list[dict[str, str]] = Field(
        default_factory=list, description="each walk-forward fold's splits, oldest first"
    )

    @field_validator("quantiles")
    @classmethod
    def _median_in_the_middle(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) % 2 == 0 or value[len(value) // 2] != 0.5 or list(value) != sorted(value):
            raise ValueError(f"quantiles {value} must be sorted and odd in number around 0.5")
        return value

    @model_validator(mode="before")
    @classmethod
    def _earlier_cards(cls, data):
        if not isinstance(data, dict):
            return data
        if "warmup" not in data and "bars_needed" in data:
            data = {**data, "warmup": data["bars_needed"] - data["window"]}
        if "tickers" not in data and any(k in data for k in ("ticker", *_PER_TICKER)):
            fit = {k: data[k] for k in _PER_TICKER if k in data}
            data = {**data, "tickers": {data.get("ticker", ""): fit}}
        return data

    @property
    def trained_on(self) -> list[str]:
        """The tickers the model was trained on (empty for a card that names none)."""
        return [t for t in self.tickers if t]

    def fit_for(self, ticker: str) -> TickerFit:
        """What the model holds for ``ticker``; KeyError when it was not trained on it."""
        if ticker in self.tickers:
            return self.tickers[ticker]
        if list(self.tickers) == [""]:
            return self.tickers[""]
        raise KeyError(f"trained on {', '.join(self.trained_on)}, not {ticker}")

    @property
    def bars_needed(self) -> int:
        """Bars one forecast needs: the window plus the features' warm-up."""
        return self.window + self.warmup

    @property
    def interval_level(self) -> float:
        return self.quantiles[-1] - self.quantiles[0]

    def write(self, folder: Path) -> Path:
        path = Path(folder) / METADATA_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        return cls.model_validate(json.loads((Path(folder) / METADATA_FILE).read_text()))
