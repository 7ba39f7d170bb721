"""The network itself: a plain ``nn.Module``, free of Lightning, exported to ONNX as is."""

from __future__ import annotations

import torch
from torch import nn


class LSTMFactory(nn.Module):
    """The network itself, not a factory of networks: the seed project's name is kept.

    Stacked LSTM over a window of daily features, with a quantile head.

    The head predicts the median and, on each side, positive gaps to the next quantile,
    so the quantiles come out sorted by construction (no crossing intervals).
    """

    def __init__(
        self,
        n_features: int,
        hidden_size: int = 50,
        num_layers: int = 2,
        dropout: float = 0.2,
        n_quantiles: int = 3,
    ):
        super().__init__()
        if n_quantiles % 2 == 0:
            raise ValueError(f"n_quantiles must be odd (a median in the middle), got {n_quantiles}")
        self.lstm = nn.LSTM(
            input_size=n_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_quantiles)
        self.middle = n_quantiles // 2

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """(batch, window, features) -> (batch, quantiles), sorted along the last axis."""
        sequence, _ = self.lstm(window)
        raw = self.head(self.dropout(sequence[:, -1]))
        median = raw[:, self.middle : self.middle + 1]
        gaps = nn.functional.softplus(raw)
        below = median - torch.flip(torch.cumsum(torch.flip(gaps[:, : self.middle], [1]), 1), [1])
        above = median + torch.cumsum(gaps[:, self.middle + 1 :], 1)
        return torch.cat([below, median, above], dim=1)
