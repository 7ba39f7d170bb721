"""The seed project's recipe, rebuilt as a baseline: Close only, MinMaxScaler, window 60,
two LSTM(50) layers, a price-level target, MSE, Adam, 50 epochs, batch 32.

It is here to show, on the same test days, why the product does not do this: the
scaled price leaves the scaler's range when prices make new highs or lows, and a model
of the price level mostly learns to repeat yesterday's price, late and blurred.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

WINDOW = 60


class SeedLSTM(torch.nn.Module):
    """The seed's network, kept apart from the product's so this baseline never moves with it:
    two stacked LSTM(50) layers with dropout, and a dense layer on the last step."""

    def __init__(self, hidden_size: int = 50, dropout: float = 0.2):
        super().__init__()
        self.lstm = torch.nn.LSTM(1, hidden_size, num_layers=2, dropout=dropout, batch_first=True)
        self.dropout = torch.nn.Dropout(dropout)
        self.dense = torch.nn.Linear(hidden_size, 1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        sequence, _ = self.lstm(window)
        return self.dense(self.dropout(sequence[:, -1]))


def seed_forecasts(
    prices: pd.DataFrame, test_start: pd.Timestamp, epochs: int = 50, seed: int = 42
) -> pd.Series:
    """Next-close forecasts for every test day (indexed by anchor date), trained on the days before."""
    torch.manual_seed(seed)
    close = prices["Close"].to_numpy(dtype="float64")
    dates = prices.index
    train_rows = dates < test_start
    low, high = close[train_rows].min(), close[train_rows].max()  # MinMaxScaler on training rows
    scaled = ((close - low) / (high - low)).astype(np.float32)

    x = np.lib.stride_tricks.sliding_window_view(scaled[:-1], WINDOW)[:, :, None]
    y = scaled[WINDOW:]
    target_dates = dates[WINDOW:]
    train = target_dates < test_start
    net = SeedLSTM()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(np.ascontiguousarray(x[train])), torch.from_numpy(y[train])),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    net.train()
    for _ in range(epochs):
        for batch_x, batch_y in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(batch_x)[:, 0], batch_y)
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        predicted = net(torch.from_numpy(np.ascontiguousarray(x[~train])))[:, 0].numpy()
    anchors = dates[WINDOW - 1 : -1][~train]
    return pd.Series(predicted * (high - low) + low, index=anchors)
