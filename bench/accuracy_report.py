"""The walk-forward record of ``make bench-accuracy``, scored and reported.

Scores per year and pooled for every forecaster, the verdicts against the targets, the
markdown report and the plot. ``bench/accuracy.py`` produces the record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LSTM = "lstm"
HINDSIGHT = "hindsight 22d"
TARGETS = {  # the bar the network is held to, pooled over the years, on these tickers
    "tickers": ("PETR4.SA", "VALE3.SA"),
    "interval_score_vs_best_classic": 0.97,
    "pooled_coverage": (0.77, 0.83),
    "yearly_coverage": (0.70, 0.90),
    "mae_ratio_naive": 1.00,
}


def scores(forecasts: pd.DataFrame, levels=(0.1, 0.5, 0.9)) -> dict[str, dict[str, float]]:
    """Every forecaster's metrics over these days: MAE (and its ratio to naive); for those with
    an interval, coverage, width, interval score and pinball loss; in R$ but for ratios."""
    from services.core.scoring import against_naive
    from trainer.evaluate import interval_metrics

    actual, last_close = forecasts["actual"].to_numpy(), forecasts["last_close"].to_numpy()
    names = dict.fromkeys(c.split("|")[0] for c in forecasts.columns if "|" in c)
    rows = {
        "naive": {"mae_brl": float(np.mean(np.abs(last_close - actual))), "mae_ratio_naive": 1.0}
    }
    for name in names:
        median = forecasts[f"{name}|0.5"].to_numpy()
        known = ~np.isnan(median)
        if not known.all():  # a forecaster that covers only some of these days is not scored
            continue
        scored = against_naive(median, actual, last_close)
        rows[name] = {"mae_brl": scored.mae, "mae_ratio_naive": scored.ratio}
        columns = [f"{name}|{level}" for level in levels]
        if all(c in forecasts for c in columns):
            rows[name] |= interval_metrics(actual, forecasts[columns].to_numpy(), levels)
    return rows


def summarize(tickers: dict, target_years: list[int]) -> dict:
    """Per ticker: each year's and the pooled scores, and the targets' verdicts."""
    from bench.classic import CLASSIC

    summary = {}
    for ticker, result in tickers.items():
        forecasts = pd.DataFrame(result["forecasts"])
        by_year = {int(y): scores(part) for y, part in forecasts.groupby("year")}
        pooled = scores(forecasts)
        best = min(CLASSIC, key=lambda n: pooled[n]["interval_score_brl"])
        lstm = pooled[LSTM]
        yearly = [by_year[y][LSTM]["coverage"] for y in by_year]
        checks = {
            "interval_score_vs_best_classic": lstm["interval_score_brl"]
            / pooled[best]["interval_score_brl"],
            "pooled_coverage": lstm["coverage"],
            "yearly_coverage": (min(yearly), max(yearly)),
            "mae_ratio_naive": lstm["mae_ratio_naive"],
        }
        summary[ticker] = {
            "days": len(forecasts),
            "years": by_year,
            "pooled": pooled,
            "best_classic": best,
            "checks": checks,
            "met": _met(checks) if list(by_year) == target_years else None,
        }
    return summary


def _met(checks: dict) -> dict[str, bool]:
    low, high = TARGETS["pooled_coverage"]
    year_low, year_high = TARGETS["yearly_coverage"]
    return {
        "interval_score_vs_best_classic": checks["interval_score_vs_best_classic"]
        <= TARGETS["interval_score_vs_best_classic"],
        "pooled_coverage": low <= checks["pooled_coverage"] <= high,
        "yearly_coverage": year_low <= checks["yearly_coverage"][0]
        and checks["yearly_coverage"][1] <= year_high,
        "mae_ratio_naive": checks["mae_ratio_naive"] <= TARGETS["mae_ratio_naive"],
    }


def fmt(value, spec: str) -> str:
    return "–" if value is None or value != value else format(value, spec)


def markdown(results: dict, summary: dict) -> str:
    from bench.classic import CLASSIC

    interval = [LSTM, *CLASSIC, HINDSIGHT]
    lines = [
        f"# Walk-forward accuracy on real prices, test years {results['years']}",
        "",
        f"Measured {results['measured_at']} on {results['machine']} by `make bench-accuracy` in "
        f"{results['wall_seconds'] / 60:.1f} minutes. Each year is forecast by a network trained "
        "on everything before the 252 validation targets that precede it; the classic "
        "forecasters use what was known at each anchor. Interval score: Winkler's, of the 80 % "
        "interval (width + 10 x distance outside), R$ per day; lower is better.",
        "",
        "## Pooled over the years",
        "",
        "| ticker | days | LSTM MAE / naive | LSTM coverage | "
        + " | ".join(f"{n} interval score" for n in interval)
        + " | LSTM / best classic |",
        "| --- | ---: | ---: | ---: |" + " ---: |" * len(interval) + " ---: |",
    ]
    for ticker, s in summary.items():
        pooled = s["pooled"]
        lines.append(
            f"| {ticker} | {s['days']} | {fmt(pooled[LSTM]['mae_ratio_naive'], '.4f')} | "
            f"{fmt(pooled[LSTM]['coverage'], '.1%')} | "
            + " | ".join(fmt(pooled[n]["interval_score_brl"], ".4f") for n in interval)
            + f" | {s['checks']['interval_score_vs_best_classic']:.3f} ({s['best_classic']}) |"
        )
    lines += ["", "## Year by year", ""]
    lines += [
        "| ticker | year | forecaster | MAE R$ | MAE / naive | coverage | width R$ | interval score R$ | pinball R$ |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ticker, s in summary.items():
        for year, rows in [*s["years"].items(), ("pooled", s["pooled"])]:
            for name, row in rows.items():
                lines.append(
                    f"| {ticker} | {year} | {name} | {fmt(row['mae_brl'], '.4f')} | "
                    f"{fmt(row['mae_ratio_naive'], '.4f')} | {fmt(row.get('coverage'), '.1%')} | "
                    f"{fmt(row.get('interval_width_brl'), '.3f')} | "
                    f"{fmt(row.get('interval_score_brl'), '.4f')} | {fmt(row.get('pinball_brl'), '.4f')} |"
                )
    lines += ["", "## Against the targets", ""]
    lines += _target_lines(summary)
    lines += ["", "## Cost", ""]
    lines += [
        "| ticker | years | training s per year (median) | epochs (median) | validation interval score R$ (mean of years) | seed recipe s | wall s | peak MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ticker, result in results["tickers"].items():
        years = result["years"].values()
        lines.append(
            f"| {ticker} | {len(years)} | {np.median([y['seconds'] for y in years]):.0f} | "
            f"{np.median([y['epochs'] for y in years]):.0f} | "
            f"{np.mean([y['validation']['interval_score_brl'] for y in years]):.4f} | "
            f"{fmt(result['seed_recipe_seconds'], '.0f')} | {result['wall_seconds']:.0f} | {result['peak_rss_mb']:.0f} |"
        )
    for ticker, result in results["tickers"].items():
        for year, why in result["skipped"].items():
            lines.append(f"\n{ticker} {year}: not forecast: {why}")
    return "\n".join(lines) + "\n"


def _target_lines(summary: dict) -> list[str]:
    low, high = TARGETS["pooled_coverage"]
    year_low, year_high = TARGETS["yearly_coverage"]
    lines = [
        f"| ticker | interval score / best classic (<= {TARGETS['interval_score_vs_best_classic']}) | "
        f"pooled coverage ({low:.0%}-{high:.0%}) | coverage by year ({year_low:.0%}-{year_high:.0%}) | "
        f"MAE / naive (<= {TARGETS['mae_ratio_naive']:.2f}) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for ticker in TARGETS["tickers"]:
        if ticker not in summary or summary[ticker]["met"] is None:
            continue
        c, met = summary[ticker]["checks"], summary[ticker]["met"]
        mark = {True: "met", False: "NOT met"}
        lines.append(
            f"| {ticker} | {c['interval_score_vs_best_classic']:.3f} {mark[met['interval_score_vs_best_classic']]} | "
            f"{c['pooled_coverage']:.1%} {mark[met['pooled_coverage']]} | "
            f"{c['yearly_coverage'][0]:.1%} to {c['yearly_coverage'][1]:.1%} {mark[met['yearly_coverage']]} | "
            f"{c['mae_ratio_naive']:.4f} {mark[met['mae_ratio_naive']]} |"
        )
    if len(lines) == 2:
        return [f"The targets are judged on {', '.join(TARGETS['tickers'])} over every test year."]
    return lines


def plot(summary: dict, path: Path) -> None:
    """Interval score by year, LSTM against the classic forecasters, one panel per ticker; as a
    ratio to EWMA's, since the R$ scores move with the price level far more than between models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.classic import CLASSIC, EWMA

    figure, axes = plt.subplots(1, len(summary), figsize=(4.6 * len(summary), 3.8), squeeze=False)
    for axis, (ticker, s) in zip(axes[0], summary.items(), strict=True):
        years = list(s["years"])
        reference = np.array([s["years"][y][EWMA]["interval_score_brl"] for y in years])
        for name in [LSTM, *CLASSIC, HINDSIGHT]:
            values = np.array([s["years"][y][name]["interval_score_brl"] for y in years])
            style = {"ls": "--", "color": "gray"} if name == HINDSIGHT else {"marker": "o"}
            width = 2.4 if name == LSTM else 1.2
            axis.plot(years, values / reference, lw=width, label=name, **style)
        axis.set_title(ticker)
        axis.set_xlabel("test year")
        axis.set_xticks(years)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"interval score / {EWMA}'s (lower is better)")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
