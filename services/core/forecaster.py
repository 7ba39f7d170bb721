"""A trained model as it is served: ONNX graph + JSON scaler + metadata, run by onnxruntime.

The trainer writes these three files into the ``model/`` folder of its run and registers
that folder; the predictor serves it and the trainer reloads a champion from it to
compare on the same test days. No torch and no pickle are involved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from services.core.features import FEATURES, TARGET, WARMUP, features_and_unit
from services.core.model_card import METADATA_FILE, ModelCard, TickerFit
from services.core.price_rules import Bars
from services.core.quantiles import (
    Calibration,
    adapted_widening,
    to_prices,
    to_return_quantiles,
)
from services.core.windows import Scaler, Windows, column_windows, make_windows

MODEL_FILE = "model.onnx"
SCALERS_FILE = "scalers.json"  # each ticker's scaler, by ticker
SCALER_FILE = "scaler.json"  # the one scaler of a model written before pooled models
INPUT_NAME = "window"
OUTPUT_NAME = "quantiles"


class ArtifactError(ValueError):
    """The model folder is missing a file or its files disagree with each other."""


@dataclass(frozen=True)
class Forecasts:
    """Price quantiles for each anchor day, with what is needed to read them."""

    anchor_dates: pd.DatetimeIndex
    last_close: np.ndarray  # (n,)
    prices: np.ndarray  # (n, quantiles)
    actual: np.ndarray  # (n,) next close; NaN where not known yet

    @property
    def median(self) -> np.ndarray:
        return self.prices[:, self.prices.shape[1] // 2]


def write_scalers(folder: Path, scalers: dict[str, Scaler]) -> None:
    (Path(folder) / SCALERS_FILE).write_text(
        json.dumps({ticker: scaler.to_dict() for ticker, scaler in scalers.items()}, indent=2)
    )


def _read_scalers(folder: Path, card: ModelCard) -> dict[str, Scaler]:
    if (folder / SCALERS_FILE).is_file():
        stored = json.loads((folder / SCALERS_FILE).read_text())
    else:  # one scaler, of the card's one ticker
        stored = {next(iter(card.tickers)): json.loads((folder / SCALER_FILE).read_text())}
    if set(stored) != set(card.tickers):
        raise ArtifactError(
            f"{folder}: scalers for {sorted(stored)}, a model card for {sorted(card.tickers)}"
        )
    return {ticker: Scaler.from_dict(data) for ticker, data in stored.items()}


class ForecastModel:
    """One model folder, loaded and checked: the ONNX graph, one session however many tickers
    it serves, and each ticker's scaler and calibration (``for_ticker``)."""

    def __init__(self, folder: str | Path, card: ModelCard | None = None):
        """``card`` stands in for the folder's own while the trainer is still writing it."""
        folder = Path(folder)
        scalers = SCALER_FILE if (folder / SCALER_FILE).is_file() else SCALERS_FILE
        needed = (MODEL_FILE, scalers) + (() if card else (METADATA_FILE,))
        missing = [f for f in needed if not (folder / f).is_file()]
        if missing:
            raise ArtifactError(f"model folder {folder} lacks {', '.join(missing)}")
        try:
            self.card = card or ModelCard.read(folder)
            self.scalers = _read_scalers(folder, self.card)
        except (ValueError, KeyError) as exc:
            raise ArtifactError(f"{folder}: {exc}") from exc
        self.window = self.card.window
        self.quantiles = self.card.quantiles
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one request is small; threads only add latency
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._check()

    def _check(self) -> None:
        card = self.card
        if (card.features, card.target, card.warmup) != (FEATURES, TARGET, WARMUP):
            raise ArtifactError(
                f"the model card says features {list(card.features)}, target {card.target!r} "
                f"and a warm-up of {card.warmup}; this code computes {list(FEATURES)}, "
                f"{TARGET!r} and {WARMUP}"
            )
        (model_input,) = self.session.get_inputs()
        (model_output,) = self.session.get_outputs()
        if model_input.name != INPUT_NAME or model_input.shape[1:] != [self.window, len(FEATURES)]:
            raise ArtifactError(
                f"model.onnx takes {model_input.name}{model_input.shape}; the model card expects "
                f"{INPUT_NAME}[batch, {self.window}, {len(FEATURES)}]"
            )
        if model_output.shape[-1] != len(self.quantiles):
            raise ArtifactError(
                f"model.onnx gives {model_output.shape[-1]} outputs "
                f"for {len(self.quantiles)} quantiles"
            )

    @property
    def interval_level(self) -> float:
        return self.card.interval_level

    @property
    def bars_needed(self) -> int:
        """Bars one forecast needs: the window plus the features' warm-up."""
        return self.card.bars_needed

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The ONNX graph's output for scaled windows: sorted quantiles of the scaled target."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    def for_ticker(self, ticker: str) -> TickerModel:
        """The model as ``ticker`` is served by it; ArtifactError if it was not trained on it."""
        try:
            fit = self.card.fit_for(ticker)
        except KeyError as exc:
            raise ArtifactError(f"the model (run {self.card.run_id}) was {exc.args[0]}") from None
        key = ticker if ticker in self.scalers else next(iter(self.scalers))
        return TickerModel(self, ticker, self.scalers[key], fit)


@dataclass(frozen=True)
class TickerModel:
    """One ticker's view of a model: the shared graph with that ticker's scaler and calibration."""

    model: ForecastModel
    ticker: str
    scaler: Scaler
    fit: TickerFit

    @property
    def calibration(self):
        return self.fit.calibration

    @property
    def card(self) -> ModelCard:
        return self.model.card

    @property
    def window(self) -> int:
        return self.model.window

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.model.quantiles

    @property
    def interval_level(self) -> float:
        return self.model.interval_level

    @property
    def bars_needed(self) -> int:
        return self.model.bars_needed

    def raw(self, x: np.ndarray) -> np.ndarray:
        return self.model.raw(x)

    def calibrated(self, calibration: Calibration) -> TickerModel:
        """The same model with another calibration: to compare corrections on the same days."""
        return replace(self, fit=self.fit.model_copy(update={"calibration": calibration}))

    def forecast_windows(self, windows: Windows) -> Forecasts:
        """Forecasts for each window; an adaptive widening replays the windows from the
        calibration's ``since`` on, which must be every anchor day from then (``widening``)."""
        raw = self.raw(windows.x)
        widen = self.widening(windows, raw)[:-1]
        returns = to_return_quantiles(raw, windows.volatility, self.calibration, widen)
        return Forecasts(
            anchor_dates=windows.anchor_dates,
            last_close=windows.last_close,
            prices=to_prices(windows.last_close, returns),
            actual=windows.last_close * np.exp(windows.y),
        )

    def widening(self, windows: Windows, raw: np.ndarray) -> np.ndarray:
        """The conformal widening of each window and, last, the one after them (units of
        volatility): the calibration's own, or from ``since`` on the replay of its closes."""
        fixed = np.full(len(raw) + 1, self.calibration.widen)
        if not self.calibration.adapts:
            return fixed
        replayed = np.flatnonzero(windows.anchor_dates >= pd.Timestamp(self.calibration.since))
        if not len(replayed):
            return fixed
        first = replayed[0]
        fixed[first:] = adapted_widening(
            raw[first:],
            windows.y[first:] / windows.volatility[first:],
            self.calibration,
            self.interval_level,
        )
        return fixed

    def widening_path(self, prices: pd.DataFrame) -> pd.Series:
        """The widening of a forecast made on each day of ``prices`` from ``since`` on (the
        last value is the one the next forecast gets): what the predictor serves with. Empty
        when the calibration does not adapt or ``prices`` end before ``since``."""
        if not self.calibration.adapts:
            return pd.Series(dtype="float64")
        since = pd.Timestamp(self.calibration.since)
        if prices.index[-1] < since:
            return pd.Series(dtype="float64")
        windows = make_windows(self._bars_for(prices, since), self.scaler, self.window)
        windows = windows.take(np.asarray(windows.anchor_dates >= since))
        widen = self.widening(windows, self.raw(windows.x))[:-1]
        return pd.Series(widen, index=windows.anchor_dates)

    def widen_on(self, path: pd.Series, day) -> float:
        """The widening of a forecast made on ``day``, from ``widening_path``'s path: the
        calibration's own before ``since``, the latest known after the path ends."""
        # numpy's search, not pandas' asof: this is on a request's path
        after = np.searchsorted(path.index.values, np.datetime64(day, "ns"), side="right")
        return self.calibration.widen if after == 0 else float(path.values[after - 1])

    def widen_for(self, path: pd.Series, bars: Bars) -> float:
        """The widening of a forecast made on the last of a request's ``bars``, given the
        snapshot's ``widening_path``.

        Up to the path's last day it is the path's. Bars that run past it carry closes the
        snapshot has not seen: the replay goes on over them, from the request's first anchor
        on or after that day (or after ``since``, when the path is empty), starting from the
        widening the path gives it. Bars that reach back over that day, a window and its
        warm-up before it, give exactly the widening a snapshot holding them would have.
        """
        if not self.calibration.adapts:
            return self.calibration.widen
        resume = path.index[-1] if len(path) else pd.Timestamp(self.calibration.since)
        resume_day = np.datetime64(resume, "D")
        if bars.days[-1] <= resume_day:
            return self.widen_on(path, bars.days[-1])
        # Arrays only, as in forecast_next: this is a request's path.
        anchor = max(int(np.searchsorted(bars.days, resume_day)), self.bars_needed - 1)
        b = bars.take(slice(anchor - self.bars_needed + 1, None))
        windows = column_windows(
            b.days, b.open, b.high, b.low, b.close, b.volume, scaler=self.scaler, window=self.window
        )
        start = replace(self.calibration, widen=self.widen_on(path, resume))
        realized = windows.y / windows.volatility
        return float(
            adapted_widening(self.raw(windows.x), realized, start, self.interval_level)[-1]
        )

    def _bars_for(self, prices: pd.DataFrame, first_anchor: pd.Timestamp) -> pd.DataFrame:
        """``prices`` from the bars the window of ``first_anchor`` (or the first possible) needs."""
        first = int(np.searchsorted(prices.index, first_anchor))
        return prices.iloc[max(0, first - self.bars_needed + 1) :]

    def forecast(self, prices: pd.DataFrame, anchors: pd.DatetimeIndex | None = None) -> Forecasts:
        """Forecasts for every anchor day of ``prices`` (or only ``anchors``)."""
        if anchors is not None and len(anchors):
            first = pd.Timestamp(anchors.min())
            if self.calibration.adapts:  # the replay needs every day from since
                first = min(first, pd.Timestamp(self.calibration.since))
            prices = self._bars_for(prices, first)
        windows = make_windows(prices, self.scaler, self.window)
        forecasts = self.forecast_windows(windows)
        if anchors is None:
            return forecasts
        keep = np.asarray(forecasts.anchor_dates.isin(anchors))
        return Forecasts(
            forecasts.anchor_dates[keep],
            forecasts.last_close[keep],
            forecasts.prices[keep],
            forecasts.actual[keep],
        )

    def forecast_next(self, bars: Bars, widen: float | None = None) -> np.ndarray:
        """Price quantiles for the day after the last bar, from the bars one forecast needs,
        with the calibration's widening or ``widen`` (``widen_on`` the last bar's day).

        Arrays only: this is a request's path. It computes what ``forecast`` computes for
        the last day of the same bars (the same feature functions, the same window).
        """
        n = self.bars_needed
        close = bars.close[-n:]
        features, unit = features_and_unit(
            bars.open[-n:], bars.high[-n:], bars.low[-n:], close, bars.volume[-n:]
        )
        x = self.scaler.transform(features[-self.window :])[None]
        volatility = unit[-1:]
        returns = to_return_quantiles(self.raw(x), volatility, self.calibration, widen)
        return to_prices(close[-1:], returns)[0]
