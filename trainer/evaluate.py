"""Accuracy in R$, next to the baselines every daily-price model must be compared with."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from services.core.quantiles import Calibration, to_prices, to_return_quantiles
from services.core.scoring import against_naive, coverage, interval_scores, pinball_loss

SHRINK_GRID = np.linspace(0.0, 1.0, 21)
# Below this share of naive's validation MAE, a gain is not worth the risk of being worse:
# on thousands of pooled validation days a 0.2 % gain is "significant", and it was gone on
# the test year (the 2018 fold of the design years).
MIN_GAIN = 0.01


def point_metrics(
    actual: np.ndarray, forecast: np.ndarray, last_close: np.ndarray
) -> dict[str, float]:
    """MAE, RMSE (R$), MAPE (%) and directional accuracy (days where the forecast moved)."""
    error = forecast - actual
    predicted_move = np.sign(forecast - last_close)
    moved = predicted_move != 0
    direction = (
        float(np.mean(predicted_move[moved] == np.sign(actual - last_close)[moved]))
        if moved.any()
        else np.nan
    )
    return {
        "mae_brl": float(np.mean(np.abs(error))),
        "rmse_brl": float(np.sqrt(np.mean(error**2))),
        "mape_pct": float(100 * np.mean(np.abs(error) / actual)),
        "directional_accuracy": direction,
    }


def interval_metrics(actual: np.ndarray, quantiles: np.ndarray, levels) -> dict[str, float]:
    """The outer quantiles as an interval (coverage, width, interval score), and the pinball
    loss of them all; in R$ but for coverage."""
    lower, upper = quantiles[:, 0], quantiles[:, -1]
    alpha = 1.0 - (levels[-1] - levels[0])
    return {
        "coverage": coverage(actual, lower, upper),
        "interval_width_brl": float(np.mean(upper - lower)),
        "interval_score_brl": float(np.mean(interval_scores(actual, lower, upper, alpha))),
        "pinball_brl": pinball_loss(actual, quantiles, levels),
    }


def baseline_forecasts(prices: pd.DataFrame, anchors: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Forecasts of the next close made on each anchor day with nothing but past closes.

    - naive: tomorrow = today;
    - drift: today plus the average daily change since the first bar (Hyndman's drift);
    - ma5: the mean of the last five closes.
    """
    close = prices["Close"]
    position = prices.index.get_indexer(anchors)
    today = close.to_numpy()[position]
    drift = today + (today - close.iloc[0]) / np.maximum(position, 1)
    ma5 = close.rolling(5, min_periods=1).mean().to_numpy()[position]
    return {"naive": today, "drift": drift, "ma5": ma5}


def evaluate(
    prices: pd.DataFrame,
    anchors: pd.DatetimeIndex,
    actual: np.ndarray,
    quantile_prices: dict[str, np.ndarray],
    levels=(0.1, 0.5, 0.9),
) -> dict[str, dict[str, float]]:
    """One row of metrics per forecaster on the same days; models bring their intervals.

    ``quantile_prices`` maps a model's name to its (n, quantiles) price forecasts at
    ``levels``. Every row gets its MAE as a ratio to the naive MAE.
    """
    last_close = prices["Close"].reindex(anchors).to_numpy()
    medians = {name: q[:, q.shape[1] // 2] for name, q in quantile_prices.items()}
    medians |= baseline_forecasts(prices, anchors)
    rows: dict[str, dict[str, float]] = {}
    for name, forecast in medians.items():
        rows[name] = point_metrics(actual, forecast, last_close)
        rows[name]["mae_ratio_naive"] = against_naive(forecast, actual, last_close).ratio
        q = quantile_prices.get(name)
        if q is not None and q.shape[1] > 1:  # a point forecast has no interval to score
            rows[name] |= interval_metrics(actual, q, levels)
    return rows


def beats(errors: np.ndarray, benchmark_errors: np.ndarray, level: float = 0.05) -> bool:
    """The one-step Diebold-Mariano test on absolute errors, a one-sided t test of their
    differences: True when ``errors`` are smaller than the benchmark's at ``level``."""
    differential = np.abs(errors) - np.abs(benchmark_errors)
    return bool(stats.ttest_1samp(differential, 0.0, alternative="less").pvalue < level)


def fit_calibration(
    raw: np.ndarray,
    y: np.ndarray,
    last_close: np.ndarray,
    volatility: np.ndarray,
    level: float,
    groups: np.ndarray | None = None,
) -> Calibration:
    """Fit the shrinkage of the median and the conformal widening on validation samples.

    Shrinkage: the factor in [0, 1] with the lowest validation MAE, taken only when a
    one-sided Diebold-Mariano test says it beats the naive forecast (factor 0) at the 5 %
    level and by at least ``MIN_GAIN``; otherwise 0. A gain smaller than its own noise is
    not a skill, and one too small to matter not worth its risk. With ``groups``
    (the samples' tickers), each error counts relative to its ticker's naive MAE, so that
    a stock priced at R$ 80 does not outweigh one at R$ 8.
    Widening: split-conformal quantile regression (Romano et al., 2019): the
    ``level``-quantile of how far each validation target falls outside its raw interval.
    """
    actual = last_close * np.exp(y)
    scale = np.ones_like(actual)
    if groups is not None:
        naive = np.abs(last_close - actual)
        for group in np.unique(groups):
            scale[groups == group] = max(naive[groups == group].mean(), 1e-12)
    errors = []
    for shrink in SHRINK_GRID:
        q = to_prices(last_close, to_return_quantiles(raw, volatility, Calibration(shrink, 0.0)))
        errors.append((q[:, q.shape[1] // 2] - actual) / scale)
    mae = [np.mean(np.abs(e)) for e in errors]
    best = int(np.argmin(mae))
    relevant = mae[best] <= (1 - MIN_GAIN) * mae[0]
    shrink = float(SHRINK_GRID[best]) if relevant and beats(errors[best], errors[0]) else 0.0
    # Conformity scores in units of volatility, so the correction carries across regimes
    # and across stocks.
    z = y / volatility
    outside = np.maximum(raw[:, 0] - z, z - raw[:, -1])
    n = len(outside)
    widen = float(np.quantile(outside, min(1.0, level * (n + 1) / n)))
    return Calibration(shrink=shrink, widen=widen)


def summary_table(rows: dict[str, dict[str, float]], title: str) -> str:
    """The model against the baselines, as a Markdown table (it reads well in a terminal too)."""
    columns = [
        ("MAE R$", "mae_brl", "{:.4f}"),
        ("RMSE R$", "rmse_brl", "{:.4f}"),
        ("MAPE %", "mape_pct", "{:.3f}"),
        ("MAE/naive", "mae_ratio_naive", "{:.4f}"),
        ("direction", "directional_accuracy", "{:.1%}"),
        ("coverage", "coverage", "{:.1%}"),
        ("width R$", "interval_width_brl", "{:.3f}"),
        ("interval score R$", "interval_score_brl", "{:.3f}"),
    ]
    lines = [f"**{title}**", "", "| forecaster | " + " | ".join(c[0] for c in columns) + " |"]
    lines.append("| --- |" + " ---: |" * len(columns))
    for name, row in rows.items():
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append("–" if value is None or np.isnan(value) else fmt.format(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
