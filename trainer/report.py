"""What a training run leaves for people: the summary, the test predictions and a backtest
plot of each ticker."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from services.core.scoring import against_naive
from trainer.data import target_dates
from trainer.evaluate import interval_metrics, summary_table
from trainer.walk_forward import Evidence


def predictions_frame(
    ticker: str, evidence: Evidence, prices: pd.DataFrame, quantiles
) -> pd.DataFrame:
    forecasts = evidence.forecasts
    targets = target_dates(prices, forecasts.anchor_dates)
    frame = pd.DataFrame(
        {
            "ticker": ticker,
            "fold": evidence.folds,
            "anchor_date": forecasts.anchor_dates.strftime("%Y-%m-%d"),
            "target_date": targets.strftime("%Y-%m-%d"),
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
    lines = [
        "| fold (first test day) | days | MAE/naive | coverage | interval score R$ |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for fold, part in predictions.groupby("fold", sort=True):
        ratio, m = _scores(part, quantiles)
        lines.append(
            f"| {fold} | {len(part)} | {ratio:.4f} | {m['coverage']:.1%} | "
            f"{m['interval_score_brl']:.3f} |"
        )
    return "\n".join(lines)


def overview_table(predictions: pd.DataFrame, quantiles) -> str:
    """One row per ticker of a pooled run: its walk-forward days against naive."""
    lines = [
        "| ticker | days | MAE/naive | coverage | interval score R$ | width R$ |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ticker, part in predictions.groupby("ticker", sort=False):
        ratio, m = _scores(part, quantiles)
        lines.append(
            f"| {ticker} | {len(part)} | {ratio:.4f} | {m['coverage']:.1%} | "
            f"{m['interval_score_brl']:.3f} | {m['interval_width_brl']:.3f} |"
        )
    return "\n".join(lines)


def _scores(part: pd.DataFrame, quantiles) -> tuple[float, dict[str, float]]:
    """These rows' MAE / naive and their interval's metrics (``interval_metrics``)."""
    columns = [c for c in part.columns if c.startswith("forecast_q")]
    actual = part["actual_close"].to_numpy()
    median = part[columns[len(columns) // 2]].to_numpy()
    ratio = against_naive(median, actual, part["last_close"].to_numpy()).ratio
    return ratio, interval_metrics(actual, part[columns].to_numpy(), quantiles)


def write_reports(
    folder: Path,
    evidence: dict[str, Evidence],
    prices: dict[str, pd.DataFrame],
    rows: dict[str, dict[str, dict[str, float]]],
    title: str,
    quantiles,
    sat_out: dict[str, list[str]],
) -> str:
    """The summary, every ticker's test predictions and backtest plot; returns what to print:
    the summary of a one-ticker run, the overview of a pooled one."""
    frames = {t: predictions_frame(t, e, prices[t], quantiles) for t, e in evidence.items()}
    predictions = pd.concat(frames.values(), ignore_index=True)
    folder.mkdir()
    (folder / "backtest").mkdir()
    predictions.to_csv(folder / "test_predictions.csv", index=False)
    sections = []
    for ticker, frame in frames.items():
        backtest_plot(frame, f"{ticker}: {title}", folder / "backtest" / f"{ticker}.png")
        table = summary_table(rows[ticker], f"{ticker}: {title}")
        sections.append(table + "\n\n" + fold_table(frame, quantiles))
    if len(frames) == 1:
        summary = sections[0]
        shown = summary
    else:
        shown = f"**{title}**\n\n" + overview_table(predictions, quantiles)
        if sat_out:
            shown += "\n\nTrained on fewer folds:\n" + "\n".join(
                f"- {t}: sat out {'; '.join(why)}" for t, why in sat_out.items()
            )
        summary = shown + "\n\n" + "\n\n".join(sections)
    (folder / "summary.md").write_text(summary + "\n")
    return shown
