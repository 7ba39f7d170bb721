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

from trainer.model import LSTMFactory

WINDOW = 60


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
    net = LSTMFactory(n_features=1, hidden_size=50, num_layers=2, dropout=0.2, n_quantiles=1)
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
