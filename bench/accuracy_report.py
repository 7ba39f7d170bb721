"""The walk-forward record of ``make bench-accuracy``, scored and reported.

Scores per stock, per year and over all stocks for every forecaster on the same days (the
days the pooled network forecast), the verdicts against the targets, the markdown report
and the plot. ``bench/accuracy.py`` produces the record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LSTM = "lstm per ticker"
POOLED = "lstm pooled"
FIXED = "lstm pooled, fixed widening"  # the same networks without the adaptive widening
HINDSIGHT = "hindsight 22d"
GARCH = "GARCH(1,1)-t"
LEVELS = (0.1, 0.5, 0.9)
TARGETS = {  # the bar the pooled network is held to, over the reported years
    "median_ratio_to_best_classic": 0.98,
    "share_better_than_garch": 0.90,
    "max_mae_ratio_naive": 1.00,
    "pooled_coverage": (0.77, 0.83),
    "ticker_coverage": (0.75, 0.85),
    "ticker_year_coverage": (0.70, 0.90),
}


def scores(forecasts: pd.DataFrame, levels=LEVELS) -> dict[str, dict[str, float]]:
    """Every forecaster's metrics over these days: MAE (and its ratio to naive); for those with
    an interval, coverage, width, interval score and pinball loss; in R$ but for ratios. A
    forecaster that covers only some of the days is not scored."""
    from services.core.scoring import against_naive
    from trainer.evaluate import interval_metrics

    actual, last_close = forecasts["actual"].to_numpy(), forecasts["last_close"].to_numpy()
    names = dict.fromkeys(c.split("|")[0] for c in forecasts.columns if "|" in c)
    rows = {
        "naive": {"mae_brl": float(np.mean(np.abs(last_close - actual))), "mae_ratio_naive": 1.0}
    }
    for name in names:
        median = forecasts[f"{name}|0.5"].to_numpy()
        if np.isnan(median).any():
            continue
        scored = against_naive(median, actual, last_close)
        rows[name] = {"mae_brl": scored.mae, "mae_ratio_naive": scored.ratio}
        columns = [f"{name}|{level}" for level in levels]
        if all(c in forecasts for c in columns):
            rows[name] |= interval_metrics(actual, forecasts[columns].to_numpy(), levels)
    return rows


def _daily_interval_scores(forecasts: pd.DataFrame, name: str) -> np.ndarray:
    from services.core.scoring import interval_scores

    alpha = 1.0 - (LEVELS[-1] - LEVELS[0])
    lower, upper = (forecasts[f"{name}|{q}"].to_numpy() for q in (LEVELS[0], LEVELS[-1]))
    return interval_scores(forecasts["actual"].to_numpy(), lower, upper, alpha)


def dm_pvalue(forecasts: pd.DataFrame, name: str, benchmark: str) -> float:
    """Diebold-Mariano, one-step, one-sided: the p-value of ``name``'s daily interval score
    being lower than ``benchmark``'s."""
    from scipy import stats

    differential = _daily_interval_scores(forecasts, name) - _daily_interval_scores(
        forecasts, benchmark
    )
    return float(stats.ttest_1samp(differential, 0.0, alternative="less").pvalue)


def _best_classic(pooled: dict) -> str:
    from bench.classic import CLASSIC

    scored = [n for n in CLASSIC if "interval_score_brl" in pooled.get(n, {})]
    return min(scored, key=lambda n: pooled[n]["interval_score_brl"])


def summarize(forecasts: pd.DataFrame, reported: bool) -> dict:
    """Per stock: each year's and the pooled scores on the pooled network's days; over all
    stocks: the targets' checks (verdicts only when ``reported``, the target years)."""
    stocks = {}
    for ticker, part in forecasts.groupby("ticker", sort=False):
        part = part[part[f"{POOLED}|0.5"].notna()]
        if part.empty:
            continue
        pooled = scores(part)
        best = _best_classic(pooled)
        by_year = {int(y): scores(p) for y, p in part.groupby("year")}
        ratio = {
            name: pooled[name]["interval_score_brl"] / pooled[best]["interval_score_brl"]
            for name in (POOLED, FIXED, LSTM, HINDSIGHT)
            if "interval_score_brl" in pooled.get(name, {})
        }
        stocks[ticker] = {
            "days": len(part),
            "years": by_year,
            "pooled": pooled,
            "best_classic": best,
            "ratio_to_best_classic": ratio,
            # GARCH needs 500 days before a month: a young stock's first years go without
            "ratio_to_garch": pooled[POOLED]["interval_score_brl"]
            / pooled[GARCH]["interval_score_brl"]
            if GARCH in pooled
            else None,
            "dm_pvalue_vs_garch": dm_pvalue(part, POOLED, GARCH) if GARCH in pooled else None,
            "year_coverage": {y: s[POOLED]["coverage"] for y, s in by_year.items()},
        }
    every = forecasts[forecasts[f"{POOLED}|0.5"].notna()]
    year_coverage = [c for s in stocks.values() for c in s["year_coverage"].values()]
    stock_coverage = [s["pooled"][POOLED]["coverage"] for s in stocks.values()]
    against_garch = [s for s in stocks.values() if s["ratio_to_garch"]]
    per_ticker = [
        s["ratio_to_best_classic"][LSTM]
        for s in stocks.values()
        if LSTM in s["ratio_to_best_classic"]
    ]
    head_to_head = [
        s["pooled"][POOLED]["interval_score_brl"] < s["pooled"][LSTM]["interval_score_brl"]
        for s in stocks.values()
        if "interval_score_brl" in s["pooled"].get(LSTM, {})
    ]
    checks = {
        "median_ratio_to_best_classic": float(
            np.median([s["ratio_to_best_classic"][POOLED] for s in stocks.values()])
        ),
        "share_better_than_garch": float(np.mean([s["ratio_to_garch"] < 1 for s in against_garch])),
        "max_mae_ratio_naive": max(s["pooled"][POOLED]["mae_ratio_naive"] for s in stocks.values()),
        "pooled_coverage": scores(every)[POOLED]["coverage"],
        "ticker_coverage": (min(stock_coverage), max(stock_coverage)),
        "ticker_year_coverage": (min(year_coverage), max(year_coverage)),
    }
    fixed, hindsight = (
        [
            s["ratio_to_best_classic"][name]
            for s in stocks.values()
            if name in s["ratio_to_best_classic"]
        ]
        for name in (FIXED, HINDSIGHT)
    )
    overall = {
        "stocks": len(stocks),
        "days": len(every),
        "checks": checks,
        "met": _met(checks) if reported else None,
        "per_ticker_median_ratio_to_best_classic": float(np.median(per_ticker))
        if per_ticker
        else None,
        "per_ticker_scored_stocks": len(per_ticker),
        # Diebold-Mariano at 5 %, one-sided, on the daily interval scores
        "significantly_better_than_garch": (
            sum(s["dm_pvalue_vs_garch"] < 0.05 for s in against_garch),
            len(against_garch),
        ),
        "fixed_widening_median_ratio_to_best_classic": float(np.median(fixed)) if fixed else None,
        # what knowing the next 22 days' variance would score: near the floor of the target
        "hindsight_median_ratio_to_best_classic": float(np.median(hindsight))
        if hindsight
        else None,
        "pooled_better_than_per_ticker": (int(sum(head_to_head)), len(head_to_head)),
    }
    return {"stocks": stocks, "overall": overall}


def _met(checks: dict) -> dict[str, bool]:
    low, high = TARGETS["pooled_coverage"]
    stock_low, stock_high = TARGETS["ticker_coverage"]
    year_low, year_high = TARGETS["ticker_year_coverage"]
    return {
        "median_ratio_to_best_classic": checks["median_ratio_to_best_classic"]
        <= TARGETS["median_ratio_to_best_classic"],
        "share_better_than_garch": checks["share_better_than_garch"]
        >= TARGETS["share_better_than_garch"],
        "max_mae_ratio_naive": checks["max_mae_ratio_naive"] <= TARGETS["max_mae_ratio_naive"],
        "pooled_coverage": low <= checks["pooled_coverage"] <= high,
        "ticker_coverage": stock_low <= checks["ticker_coverage"][0]
        and checks["ticker_coverage"][1] <= stock_high,
        "ticker_year_coverage": year_low <= checks["ticker_year_coverage"][0]
        and checks["ticker_year_coverage"][1] <= year_high,
    }


def fmt(value, spec: str) -> str:
    return "–" if value is None or value != value else format(value, spec)


def _target_lines(summary: dict) -> list[str]:
    overall = summary["overall"]
    checks, met = overall["checks"], overall["met"]
    low, high = TARGETS["pooled_coverage"]
    stock_low, stock_high = TARGETS["ticker_coverage"]
    year_low, year_high = TARGETS["ticker_year_coverage"]
    rows = [
        (
            f"median over stocks of the interval score / the stock's best classic (<= {TARGETS['median_ratio_to_best_classic']})",
            f"{checks['median_ratio_to_best_classic']:.3f}",
            "median_ratio_to_best_classic",
        ),
        (
            f"share of stocks better than GARCH(1,1)-t (>= {TARGETS['share_better_than_garch']:.0%})",
            f"{checks['share_better_than_garch']:.0%}",
            "share_better_than_garch",
        ),
        (
            f"worst stock's MAE / naive (<= {TARGETS['max_mae_ratio_naive']:.2f})",
            f"{checks['max_mae_ratio_naive']:.4f}",
            "max_mae_ratio_naive",
        ),
        (
            f"coverage over every stock-day ({low:.0%}-{high:.0%})",
            f"{checks['pooled_coverage']:.1%}",
            "pooled_coverage",
        ),
        (
            f"coverage of every stock ({stock_low:.0%}-{stock_high:.0%})",
            f"{checks['ticker_coverage'][0]:.1%} to {checks['ticker_coverage'][1]:.1%}",
            "ticker_coverage",
        ),
        (
            f"coverage of every stock-year ({year_low:.0%}-{year_high:.0%})",
            f"{checks['ticker_year_coverage'][0]:.1%} to {checks['ticker_year_coverage'][1]:.1%}",
            "ticker_year_coverage",
        ),
    ]
    lines = ["| target | measured | verdict |", "| --- | ---: | --- |"]
    for label, value, key in rows:
        verdict = "–" if met is None else ("met" if met[key] else "NOT met")
        lines.append(f"| {label} | {value} | {verdict} |")
    return lines


def markdown(results: dict, summary: dict) -> str:
    from bench.classic import CLASSIC

    overall, stocks = summary["overall"], summary["stocks"]
    won, compared = overall["pooled_better_than_per_ticker"]
    significant, garch_compared = overall["significantly_better_than_garch"]
    lines = [
        f"# Walk-forward accuracy on real prices, test years {results['years']}",
        "",
        f"Measured {results['measured_at']} on {results['machine']} by `make bench-accuracy` in "
        f"{results['wall_seconds'] / 60:.1f} minutes ({results['jobs']} jobs at a time, "
        f"petr4-train flags `{results['train_args']}`). Each year is forecast by networks trained "
        "on everything before the 252 validation targets that precede it; the classic "
        "forecasters use what was known at each anchor. Every score is on the days the pooled "
        f"network forecast: {overall['days']} stock-days of {overall['stocks']} stocks. Interval "
        "score: Winkler's, of the 80 % interval (width + 10 x distance outside), R$ per day; "
        "lower is better.",
        "",
        "## Against the targets",
        "",
        *_target_lines(summary),
        "",
        f"The per-ticker network, on the {overall['per_ticker_scored_stocks']} stocks it could "
        f"train for every one of those days: median ratio to the best classic "
        f"{fmt(overall['per_ticker_median_ratio_to_best_classic'], '.3f')}; the pooled network's "
        f"interval is better than the per-ticker one's on {won} of {compared}. Against "
        f"GARCH(1,1)-t, the pooled interval is significantly better (Diebold-Mariano, one-sided, "
        f"5 %) on {significant} of the {garch_compared} stocks it was scored on. The same networks "
        "with the widening fitted on validation and held fixed: median ratio to the best classic "
        f"{fmt(overall['fixed_widening_median_ratio_to_best_classic'], '.3f')}. The reference "
        "that knows the next 22 days' realized variance (and so cheats): median ratio "
        f"{fmt(overall['hindsight_median_ratio_to_best_classic'], '.3f')}.",
        "",
        "## By stock, over its years",
        "",
        "| stock | days | MAE / naive | coverage | "
        + " | ".join(f"{n}" for n in [POOLED, FIXED, LSTM, *CLASSIC, HINDSIGHT])
        + " | pooled / best classic | per ticker / best classic | DM p vs GARCH |",
        "| --- | ---: | ---: | ---: |" + " ---: |" * (len(CLASSIC) + 4) + " ---: | ---: | ---: |",
    ]
    for ticker, s in stocks.items():
        p = s["pooled"]
        cells = [
            fmt(p.get(n, {}).get("interval_score_brl"), ".4f")
            for n in [POOLED, FIXED, LSTM, *CLASSIC, HINDSIGHT]
        ]
        ratio = s["ratio_to_best_classic"]
        lines.append(
            f"| {ticker} | {s['days']} | {p[POOLED]['mae_ratio_naive']:.4f} | "
            f"{p[POOLED]['coverage']:.1%} | "
            + " | ".join(cells)
            + f" | {ratio[POOLED]:.3f} ({s['best_classic']}) | {fmt(ratio.get(LSTM), '.3f')} | "
            f"{fmt(s['dm_pvalue_vs_garch'], '.3f')} |"
        )
    lines += ["", "## Coverage of the pooled network, stock by year", ""]
    years = sorted({y for s in stocks.values() for y in s["year_coverage"]})
    lines += ["| stock | " + " | ".join(map(str, years)) + " |", "| --- |" + " ---: |" * len(years)]
    for ticker, s in stocks.items():
        cells = [fmt(s["year_coverage"].get(y), ".1%") for y in years]
        lines.append(f"| {ticker} | " + " | ".join(cells) + " |")
    lines += ["", "## Cost", ""]
    lines += [
        "| pooled year | stocks | training windows | epochs | fit s | wall s | peak MB | mean validation interval score R$ |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for year, r in results["pooled"].items():
        lines.append(
            f"| {year} | {r['tickers']} | {r['train_windows']} | {r['epochs']} | "
            f"{r['fit_seconds']:.0f} | {r['wall_seconds']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['validation_mean_interval_ratio']:.4f} |"
        )
    trained = [y for r in results["tickers"].values() for y in r["years"].values()]
    if trained:
        lines += [
            "",
            f"Per-ticker networks: {len(trained)} stock-years, {sum(y['seconds'] for y in trained) / 60:.1f} "
            f"minutes of training in all (median {np.median([y['seconds'] for y in trained]):.0f} s, "
            f"{np.median([y['epochs'] for y in trained]):.0f} epochs); the largest job peaked at "
            f"{max(r['peak_rss_mb'] for r in results['tickers'].values()):.0f} MB.",
        ]
    for year, r in results["pooled"].items():
        for ticker, why in r["left_out"].items():
            lines.append(f"\n{year}: {ticker} sat out the pooled training: {why}")
    for job in results["failed_jobs"]:
        lines.append(f"\nThe job {job} FAILED: its stock or year is missing above.")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """Each stock's interval score as a ratio to its best classic model, pooled and per-ticker
    networks, sorted: left of 1 is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stocks = sorted(
        summary["stocks"].items(), key=lambda item: item[1]["ratio_to_best_classic"][POOLED]
    )
    figure, axis = plt.subplots(figsize=(7, 0.22 * len(stocks) + 1.4))
    rows = np.arange(len(stocks))
    for name, marker in ((POOLED, "o"), (FIXED, "|"), (LSTM, "x")):
        values = [s["ratio_to_best_classic"].get(name, np.nan) for _, s in stocks]
        if np.isnan(values).all():
            continue  # not run (--pooled-only)
        axis.scatter(values, rows, marker=marker, label=name, s=22)
    axis.axvline(1.0, color="gray", lw=0.8)
    axis.axvline(TARGETS["median_ratio_to_best_classic"], color="gray", lw=0.8, ls="--")
    axis.set_yticks(rows, [t for t, _ in stocks], fontsize=7)
    axis.set_xlabel("interval score / the stock's best classic model (lower is better)")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
