"""petr4-train: the LSTM, its training, evaluation against baselines, export and registration."""
