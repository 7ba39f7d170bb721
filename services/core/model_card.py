"""What a trained model is, as the ``metadata.json`` beside its ONNX graph says: one typed
record, written by the trainer and read by everything that serves or judges the model.

Nothing else reads or writes that file. Cards written before this record existed still
load: the fields they carry under the same names are read, their warm-up is what their
``bars_needed`` says beyond the window, and the fields the card computes (``bars_needed``,
``interval_level``) are otherwise ignored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.core.features import FEATURES, TARGET, WARMUP
from services.core.quantiles import Calibration

METADATA_FILE = "metadata.json"


class DataLineage(BaseModel):
    """The prices a model was trained on."""

    first_date: str = ""
    last_date: str = ""  # the last day the model saw: later days are out of its sample
    source: str = ""  # "snapshot" or "file"
    sha256: str = ""
    synthetic: bool = False
    snapshot_run_id: str = ""


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, ser_json_inf_nan="constants")

    window: int = Field(ge=1, description="days in each input window")
    warmup: int = Field(WARMUP, description="bars the features consume before their first row")
    features: tuple[str, ...] = FEATURES
    target: str = TARGET
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    calibration: Calibration = Calibration()
    ticker: str = ""
    model_name: str = ""
    run_id: str = ""
    trained_at: str = ""
    data: DataLineage = DataLineage()
    splits: dict[str, str] = {}
    epochs: int | None = None
    best_epoch_val_loss: float | None = None
    onnx_max_abs_diff: float | None = None
    walk_forward: list[dict[str, str]] = Field(
        default_factory=list, description="each walk-forward fold's splits, oldest first"
    )
    metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="test metrics by forecaster (lstm, naive), pooled over the folds' test days",
    )

    @field_validator("quantiles")
    @classmethod
    def _median_in_the_middle(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) % 2 == 0 or value[len(value) // 2] != 0.5 or list(value) != sorted(value):
            raise ValueError(f"quantiles {value} must be sorted and odd in number around 0.5")
        return value

    @model_validator(mode="before")
    @classmethod
    def _warmup_of_earlier_cards(cls, data):
        if isinstance(data, dict) and "warmup" not in data and "bars_needed" in data:
            data = {**data, "warmup": data["bars_needed"] - data["window"]}
        return data

    @property
    def bars_needed(self) -> int:
        """Bars one forecast needs: the window plus the features' warm-up."""
        return self.window + self.warmup

    @property
    def interval_level(self) -> float:
        return self.quantiles[-1] - self.quantiles[0]

    def finite_metrics(self, forecaster: str) -> dict[str, float]:
        """One forecaster's test metrics, leaving out the undefined ones (NaN)."""
        return {k: v for k, v in self.metrics.get(forecaster, {}).items() if math.isfinite(v)}

    def write(self, folder: Path) -> Path:
        path = Path(folder) / METADATA_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        return cls.model_validate(json.loads((Path(folder) / METADATA_FILE).read_text()))
