"""make bench-after-training: the chart's training, then every later day forecast the way a
user forecasts it.

The pooled network is trained with petr4-train's defaults (the chart's Job) on every stock's
prices up to a cutoff; only the shipped fold, the last, is trained (each fold seeds itself,
so it is the network the Job registers). Each trading day after the cutoff is then forecast
from the 200 true bars up to it through the predictor's request path, its snapshot ending at
the cutoff: the request's own closes move the interval's widening
(``TickerModel.widen_for``). Beside it, from the same network:

- "snapshot kept current": the snapshot holds every day, as the daily ingestion keeps it;
- "widening frozen": the widening of the snapshot's last day, whatever the request's closes;
- the classic forecasters of ``bench/classic.py``, from what was known at each anchor.

Each is scored as ``make bench-accuracy`` scores the walk-forward (``bench/accuracy_report``).
``--latest`` ships instead a network validated on the year before the cutoff and trained on
everything before it (the walk-forward's yearly fold): what training the Job's shipped
network on the last two years would be worth. Designs are compared with ``--cutoff
2017-12-28 --until 2018-12-28`` (most stocks' prices start in 2015, and a shipped fold needs
three years); the reported run is the default, 2023 and 2024. Reports:
bench/reports/after_training_CUTOFF[_latest].{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.accuracy import DATA, REPORTS, add_quantiles, stock_prices, stocks
from bench.accuracy_report import POOLED, TARGETS, fmt, summarize

REQUEST_BARS = 200
VARIANTS = {
    "replayed": "request's closes replayed (served)",
    "current": "snapshot kept current",
    "frozen": "widening frozen at the cutoff",
}


def forecast_days(model, prices: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Every anchor from the snapshot's last day on, forecast from its last ``REQUEST_BARS``
    true bars, one column set per variant of the widening."""
    from services.core.price_rules import Bars

    snapshot = model.widening_path(prices.loc[:cutoff])
    current = model.widening_path(prices)
    anchors = prices.index[(prices.index >= prices.loc[:cutoff].index[-1])][:-1]
    rows = {name: [] for name in VARIANTS}
    for day in anchors:
        bars = Bars.from_frame(prices.loc[:day].iloc[-REQUEST_BARS:])
        widen = {
            "replayed": model.widen_for(snapshot, bars),
            "current": model.widen_on(current, day),
            "frozen": model.widen_on(snapshot, day),
        }
        for name, value in widen.items():
            rows[name].append(model.forecast_next(bars, value))
    close = prices["Close"]
    frame = pd.DataFrame(
        {
            "anchor_date": anchors,
            "last_close": close.reindex(anchors).to_numpy(),
            "actual": close.shift(-1).reindex(anchors).to_numpy(),
        }
    )
    frame["year"] = close.index.to_series().shift(-1).reindex(anchors).dt.year.to_numpy()
    for name, quantiles in rows.items():
        add_quantiles(frame, name, np.asarray(quantiles), model.quantiles)
    return frame


def run(
    tickers: list[str], cutoff: pd.Timestamp, until: pd.Timestamp, threads: int, latest: bool
) -> dict:
    import torch

    from bench.classic import CLASSIC
    from services.core.features import WARMUP
    from services.core.settings import parse_settings
    from trainer.data import PriceDataModule
    from trainer.settings import TrainSettings
    from trainer.walk_forward import trailing_folds, train_fold

    prices = {t: stock_prices(t).loc[:until] for t in tickers}
    args = ["--tickers", *tickers, "--threads", str(threads)]
    settings = parse_settings(TrainSettings, args, "bench", "")
    # A stock listed after the cutoff is not trained on; the folds decide for the rest.
    known = {t: p.loc[:cutoff] for t, p in prices.items()}
    known = {t: p for t, p in known.items() if len(p) > WARMUP + settings.window}
    torch.set_num_threads(settings.threads)
    with tempfile.TemporaryDirectory() as scratch:
        settings = settings.model_copy(update={"progress_bar": False, "work_dir": Path(scratch)})
        if latest:  # validated on the last year before the cutoff, trained on all before it
            calendar = PriceDataModule(prices, settings.window).calendar()
            after = calendar[calendar > cutoff]
            fold = {"folds": 1, "test_start": after[0].date(), "test_days": len(after)}
            chosen = {t: prices[t] for t in known}
            (shipped,) = trailing_folds(chosen, settings.model_copy(update=fold))
        else:
            shipped = trailing_folds(known, settings)[-1]
        started = time.perf_counter()
        trained = train_fold(settings, shipped, Path(scratch), logger=False)
        train_seconds = time.perf_counter() - started
        frames = []
        for ticker in shipped.tickers:
            frame = forecast_days(trained.served.for_ticker(ticker), prices[ticker], cutoff)
            days = pd.DatetimeIndex(frame["anchor_date"])
            for name, forecaster in CLASSIC.items():
                add_quantiles(frame, name, forecaster(prices[ticker], days), settings.quantiles)
            frames.append(frame.assign(ticker=ticker))
    forecasts = pd.concat(frames, ignore_index=True)
    left_out = sorted(set(tickers) - set(shipped.tickers))
    summaries = {}
    for name in VARIANTS:  # each scored as the walk-forward scores the served network
        others = [c for c in forecasts if c.split("|")[0] in set(VARIANTS) - {name}]
        served = {f"{name}|{q}": f"{POOLED}|{q}" for q in settings.quantiles}
        as_pooled = forecasts.drop(columns=others).rename(columns=served)
        summaries[name] = summarize(as_pooled, reported=True)["overall"]
    return {
        "cutoff": f"{cutoff:%Y-%m-%d}",
        "shipped": "latest" if latest else "the Job's last fold",
        "until": f"{forecasts['anchor_date'].max():%Y-%m-%d}",
        "stocks": len(shipped.tickers),
        "left_out": left_out,
        "train_seconds": train_seconds,
        "epochs": trained.card.epochs,
        "summaries": summaries,
    }


def markdown(result: dict) -> str:
    lines = [
        f"# After training: {result['stocks']} stocks, trained to {result['cutoff']}, "
        f"anchors to {result['until']}",
        "",
        f"Each day forecast from its {REQUEST_BARS} true bars; the predictor's snapshot ends "
        f"at the cutoff. Shipped: {result['shipped']}, trained in {result['train_seconds']:.0f} s, "
        f"{result['epochs']} epochs."
        + (
            f" Left out (too short a history): {', '.join(result['left_out'])}."
            if result["left_out"]
            else ""
        ),
        "",
        "| widening | interval score / best classic (median) | better than GARCH-t | "
        "DM-significant | coverage | by stock | by stock-year | worst MAE / naive |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in VARIANTS.items():
        o = result["summaries"][name]
        c = o["checks"]
        significant, of = o["significantly_better_than_garch"]
        lines.append(
            f"| {label} | {c['median_ratio_to_best_classic']:.3f} | "
            f"{c['share_better_than_garch']:.0%} | {significant} of {of} | "
            f"{c['pooled_coverage']:.1%} | {c['ticker_coverage'][0]:.1%}–{c['ticker_coverage'][1]:.1%} | "
            f"{c['ticker_year_coverage'][0]:.1%}–{c['ticker_year_coverage'][1]:.1%} | "
            f"{fmt(c['max_mae_ratio_naive'], '.4f')} |"
        )
    low, high = TARGETS["ticker_coverage"]
    lines += [
        "",
        f"Targets: median <= {TARGETS['median_ratio_to_best_classic']}, better than GARCH-t on "
        f">= {TARGETS['share_better_than_garch']:.0%} of stocks, coverage by stock "
        f"{low:.0%}–{high:.0%}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers", nargs="+", help="stocks (default: every one in the data)")
    parser.add_argument("--cutoff", default="2022-12-30", help="last day trained on")
    parser.add_argument("--until", default="2024-12-30", help="last day forecast from")
    parser.add_argument(
        "--latest",
        action="store_true",
        help="ship a network validated on the year before the cutoff and trained on all before "
        "it, instead of the Job's last fold (which tests on that year)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"bench-after-training: skipped: real prices not found at {DATA}")
        return 0
    started = time.perf_counter()
    result = run(
        args.tickers or stocks(),
        pd.Timestamp(args.cutoff),
        pd.Timestamp(args.until),
        args.threads,
        args.latest,
    )
    result["wall_seconds"] = time.perf_counter() - started
    REPORTS.mkdir(parents=True, exist_ok=True)
    name = f"after_training_{result['cutoff']}" + ("_latest" if args.latest else "")
    (REPORTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    report = markdown(result)
    (REPORTS / f"{name}.md").write_text(report)
    print(report)
    print(f"written: {REPORTS / name}.md and .json ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
