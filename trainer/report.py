"""What a training run leaves for people: the backtest plot and the test predictions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from services.core.forecaster import Forecasts
from services.core.scoring import against_naive, interval_scores
from trainer.evaluate import summary_table


def predictions_frame(
    forecasts: Forecasts, target_dates: pd.DatetimeIndex, folds: np.ndarray, quantiles
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "fold": folds,
            "anchor_date": forecasts.anchor_dates.strftime("%Y-%m-%d"),
            "target_date": target_dates.strftime("%Y-%m-%d"),
            "last_close": forecasts.last_close,
            "actual_close": forecasts.actual,
        }
    )
    for i, q in enumerate(quantiles):
        frame[f"forecast_q{round(q * 100):02d}"] = forecasts.prices[:, i]
    frame["error"] = forecasts.median - forecasts.actual
    frame["naive_error"] = forecasts.last_close - forecasts.actual
    return frame


def backtest_plot(predictions: pd.DataFrame, title: str, path: Path) -> None:
    """Actual close against the forecast and its interval, and both error histograms."""
    dates = pd.to_datetime(predictions["target_date"])
    lower, median, upper = _bands(predictions)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 8), gridspec_kw={"height_ratios": [2, 1]}
    )
    top.fill_between(dates, lower, upper, color="tab:blue", alpha=0.2, label="forecast interval")
    top.plot(dates, predictions["actual_close"], color="black", lw=1.2, label="actual close")
    top.plot(dates, median, color="tab:blue", lw=1, label="forecast (median)")
    for start in pd.to_datetime(predictions["fold"].unique()[1:]):  # a new model from here
        top.axvline(start, color="gray", lw=0.8, ls=":")
    top.set_title(title)
    top.set_ylabel("R$")
    top.legend(loc="upper left")
    bins = np.linspace(
        min(predictions["error"].min(), predictions["naive_error"].min()),
        max(predictions["error"].max(), predictions["naive_error"].max()),
        40,
    )
    bottom.hist(predictions["naive_error"], bins=bins, alpha=0.5, color="gray", label="naive")
    bottom.hist(predictions["error"], bins=bins, alpha=0.5, color="tab:blue", label="model")
    bottom.set_xlabel("forecast - actual (R$)")
    bottom.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _bands(predictions: pd.DataFrame):
    """The outer quantiles and the median, whatever the quantile levels."""
    columns = [c for c in predictions.columns if c.startswith("forecast_q")]
    return (
        predictions[columns[0]],
        predictions[columns[len(columns) // 2]],
        predictions[columns[-1]],
    )


def fold_table(predictions: pd.DataFrame, quantiles) -> str:
    """The network against naive fold by fold: is the pooled result every fold's?"""
    alpha = 1.0 - (quantiles[-1] - quantiles[0])
    lines = [
        "| fold (first test day) | days | MAE/naive | coverage | interval score R$ |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for fold, part in predictions.groupby("fold", sort=True):
        lower, median, upper = (b.to_numpy() for b in _bands(part))
        actual = part["actual_close"].to_numpy()
        ratio = against_naive(median, actual, part["last_close"].to_numpy()).ratio
        covered = np.mean((actual >= lower) & (actual <= upper))
        score = np.mean(interval_scores(actual, lower, upper, alpha))
        lines.append(f"| {fold} | {len(part)} | {ratio:.4f} | {covered:.1%} | {score:.3f} |")
    return "\n".join(lines)


def write_reports(
    folder: Path,
    forecasts: Forecasts,
    target_dates: pd.DatetimeIndex,
    folds: np.ndarray,
    rows: dict[str, dict[str, float]],
    title: str,
    quantiles,
) -> str:
    """The summary tables, the test predictions and the backtest plot; returns the summary."""
    predictions = predictions_frame(forecasts, target_dates, folds, quantiles)
    summary = summary_table(rows, title) + "\n\n" + fold_table(predictions, quantiles)
    folder.mkdir()
    predictions.to_csv(folder / "test_predictions.csv", index=False)
    backtest_plot(predictions, title, folder / "backtest.png")
    (folder / "summary.md").write_text(summary + "\n")
    return summary
