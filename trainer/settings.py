from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.naming import PRICES_EXPERIMENT, TRAINING_EXPERIMENT, Ticker
from services.core.tracking import MlflowSettings

# A pooled epoch holds every ticker's windows, many times one ticker's: larger batches keep
# the cores busy, and fewer epochs without progress are worth waiting for. By pooled or not.
BATCH_SIZE = {False: 64, True: 256}
PATIENCE = {False: 10, True: 3}
# Chosen on the validation years 2017-2018 (docs/model-and-evaluation.md).
ADAPTIVE_STEP = 0.015


class TrainSettings(MlflowSettings):
    """petr4-train's settings."""

    model_config = SettingsConfigDict(env_prefix="PETR4_TRAIN_")

    ticker: Ticker = Field(
        "PETR4.SA", description="ticker whose latest snapshot is trained on: a model of its own"
    )
    tickers: list[Ticker] = Field(
        [],
        description="instead of --ticker: one pooled model trained on all these tickers' "
        "latest snapshots, registered as a version of each ticker's model",
    )
    index: int | None = Field(
        None,
        ge=0,
        description="train only the ticker at this position of --tickers (from 0), a model of "
        "its own: an Indexed Job's completion index picks it",
    )
    data: Path | None = Field(
        None, description="train --ticker on this Yahoo-format CSV instead of a snapshot"
    )
    prices_experiment: str = Field(
        PRICES_EXPERIMENT, description="MLflow experiment of the snapshots"
    )
    experiment: str = Field(
        TRAINING_EXPERIMENT, description="MLflow experiment of the training runs"
    )
    window: int = Field(60, ge=2, description="trading days in each input window")
    val_days: int = Field(252, ge=10, description="validation targets, just before the test ones")
    test_days: int = Field(
        252, ge=10, description="test targets: the last ones, or from --test-start"
    )
    test_start: date | None = Field(
        None, description="first test target date (default: the last test-days)"
    )
    folds: int = Field(
        3,
        ge=1,
        description="walk-forward folds: consecutive test blocks, each with a training of its own",
    )
    quantiles: list[float] = Field(
        [0.1, 0.5, 0.9], description="predicted quantiles; the outer two bound the interval"
    )
    hidden_size: int = Field(50, ge=1, description="LSTM units per layer")
    num_layers: int = Field(2, ge=1, description="stacked LSTM layers")
    dropout: float = Field(
        0.2, ge=0, lt=1, description="dropout between layers and before the head"
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam's learning rate")
    batch_size: int | None = Field(
        None,
        ge=1,
        description=f"training batch size (default: {BATCH_SIZE[False]} for one ticker, "
        f"{BATCH_SIZE[True]} pooled, whose epochs hold every ticker's windows)",
    )
    max_epochs: int = Field(50, ge=1, description="upper bound on epochs")
    patience: int | None = Field(
        None,
        ge=1,
        description="epochs without a better validation loss before stopping (default: "
        f"{PATIENCE[False]} for one ticker, {PATIENCE[True]} pooled)",
    )
    seed: int = Field(42, description="seed of every random generator")
    register_model: bool = Field(
        True,
        description="register the model version (--no-register for experiments)",
        json_schema_extra={"flag": "--register"},  # "register" would shadow ABCMeta.register
    )
    calibration: Literal["pooled", "per-ticker"] = Field(
        "pooled",
        description="fit the median's shrinkage and the interval's conformal widening on every "
        "ticker's validation days together, or on each ticker's own",
    )
    adaptive_step: float = Field(
        ADAPTIVE_STEP,
        ge=0,
        description="how far each realized close moves the interval's conformal widening after "
        "validation, in units of volatility (adaptive conformal inference); 0 keeps it fixed",
    )
    champion_tolerance: float = Field(
        0.0,
        ge=0,
        description="relative MAE slack allowed when comparing with naive and the champion",
    )
    threads: int = Field(2, ge=1, description="torch CPU threads")
    progress_bar: bool = Field(
        default_factory=sys.stderr.isatty,
        description="show Lightning's progress bar (default: on a terminal)",
    )
    work_dir: Path = Field(Path(".cache/petr4/train"), description="scratch folder for checkpoints")
    log_level: str = Field("INFO", description="logging level")
    json_logs: bool = Field(False, description="log one JSON object per line")

    @property
    def universe(self) -> list[str]:
        """The tickers this training covers: --tickers, else --ticker alone."""
        return list(self.tickers) or [self.ticker]

    @model_validator(mode="after")
    def _one_kind_of_training(self) -> TrainSettings:
        if self.tickers and "ticker" in self.model_fields_set:
            raise ValueError(
                "give --ticker (one model for one ticker) or --tickers (one pooled model for "
                "the list), not both"
            )
        repeated = sorted({t for t in self.tickers if self.tickers.count(t) > 1})
        if repeated:
            raise ValueError(f"--tickers names {', '.join(repeated)} more than once")
        if self.index is not None:
            if not self.index < len(self.tickers):
                raise ValueError(
                    f"--index {self.index} needs --tickers with more than {self.index} tickers, "
                    f"not {len(self.tickers)}"
                )
            self.ticker, self.tickers = self.tickers[self.index], []  # as --ticker would
        if len(self.tickers) == 1:  # a pooled model of one ticker is that ticker's own
            self.ticker, self.tickers = self.tickers[0], []
        if self.tickers and self.data is not None:
            raise ValueError(
                "--data is one ticker's CSV; --tickers trains on each ticker's latest snapshot"
            )
        pooled = bool(self.tickers)
        self.batch_size = self.batch_size or BATCH_SIZE[pooled]
        self.patience = self.patience or PATIENCE[pooled]
        return self

    @field_validator("quantiles")
    @classmethod
    def _median_in_the_middle(cls, value: list[float]) -> list[float]:
        value = sorted(value)
        if len(value) % 2 == 0 or value[len(value) // 2] != 0.5 or not 0 < value[0] < value[-1] < 1:
            raise ValueError(
                "quantiles must be an odd number of levels in (0, 1) with 0.5 in the middle"
            )
        return value
