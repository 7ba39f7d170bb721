"""The LightningModule: pinball loss over the quantiles, Adam, one MAE metric per stage."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torchmetrics import MeanAbsoluteError

from trainer.network import LSTMFactory


def pinball_loss(
    prediction: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor
) -> torch.Tensor:
    """Mean quantile (pinball) loss; its minimiser is the conditional quantile."""
    error = target.unsqueeze(1) - prediction
    return torch.maximum(quantiles * error, (quantiles - 1) * error).mean()


class LSTMLightModule(L.LightningModule):
    def __init__(
        self,
        n_features: int,
        hidden_size: int = 50,
        num_layers: int = 2,
        dropout: float = 0.2,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = LSTMFactory(n_features, hidden_size, num_layers, dropout, len(quantiles))
        self.register_buffer("quantiles", torch.tensor(list(quantiles), dtype=torch.float32))
        # MAE of the median, in scaled return units; the R$ metrics come from evaluation.
        self.train_mae = MeanAbsoluteError()
        self.val_mae = MeanAbsoluteError()
        self.test_mae = MeanAbsoluteError()

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self.net(window)

    def _step(self, batch, stage: str, mae: MeanAbsoluteError) -> torch.Tensor:
        window, target = batch
        prediction = self(window)
        loss = pinball_loss(prediction, target, self.quantiles)
        mae(prediction[:, self.net.middle], target)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test")
        self.log(f"{stage}_mae", mae, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train", self.train_mae)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val", self.val_mae)

    def test_step(self, batch, batch_idx):
        self._step(batch, "test", self.test_mae)

    def configure_optimizers(self):
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
