"""The network's training: Lightning with early stopping on the validation loss."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from services.core.features import FEATURES
from trainer.data import PriceDataModule
from trainer.module import LSTMLightModule
from trainer.settings import TrainSettings


def fit(settings: TrainSettings, dm: PriceDataModule, scratch: Path, logger: Logger | bool):
    """Train with early stopping: the best module, its checkpoint callback, epochs run, seconds.

    ``logger`` receives the epochs' losses (an MLflow run's), or False for none."""
    # Lightning sets its logger to INFO when imported; its GPU/TPU notices are noise here.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    module = LSTMLightModule(
        n_features=len(FEATURES),
        hidden_size=settings.hidden_size,
        num_layers=settings.num_layers,
        dropout=settings.dropout,
        quantiles=settings.quantiles,
        learning_rate=settings.learning_rate,
    )
    checkpoint = ModelCheckpoint(dirpath=scratch, filename="best", monitor="val_loss", save_top_k=1)
    trainer = L.Trainer(
        max_epochs=settings.max_epochs,
        callbacks=[checkpoint, EarlyStopping("val_loss", patience=settings.patience)],
        logger=logger,
        accelerator="cpu",
        devices=1,
        deterministic=True,
        gradient_clip_val=1.0,
        enable_progress_bar=settings.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=scratch,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Lightning 2.6 asks torch 2.13 for a deprecated pytree class; harmless, and not ours.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        trainer.fit(module, datamodule=dm)
    fit_seconds = time.perf_counter() - started
    best = LSTMLightModule.load_from_checkpoint(checkpoint.best_model_path).eval()
    return best, checkpoint, trainer.current_epoch, fit_seconds
