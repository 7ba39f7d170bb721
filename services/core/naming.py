"""Names every service agrees on: what a ticker may look like, what its model is called in
the registry, and the alias that marks the version to serve."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

# As Yahoo spells B3 tickers and indices (PETR4.SA, ^BVSP); the chart's values schema holds
# the same pattern, so a ticker the chart refuses is refused everywhere.
TICKER_PATTERN = r"^[A-Z0-9^][A-Z0-9.\-^]*$"
_TICKER = re.compile(TICKER_PATTERN)
CHAMPION_ALIAS = "champion"  # the registry alias the promotion gate moves and predictors serve
PRICES_EXPERIMENT = "petr4-prices"  # the MLflow experiment of the price snapshots
TRAINING_EXPERIMENT = "petr4-training"  # the MLflow experiment of the training runs


def check_ticker(ticker: str) -> str:
    """``ticker`` unchanged when it is spelled as Yahoo spells it; ValueError saying why not."""
    if not _TICKER.fullmatch(ticker):
        raise ValueError(
            f"ticker {ticker!r} is not spelled as Yahoo spells it: capital letters, digits, "
            "'.', '-' or '^', such as PETR4.SA"
        )
    return ticker


Ticker = Annotated[str, AfterValidator(check_ticker)]


def registered_model_name(ticker: str) -> str:
    """The registry holds one model per ticker, under this name."""
    return f"lstm-{ticker}"


def ticker_slug(ticker: str) -> str:
    """A ticker as Kubernetes names and label values take it: PETR4.SA -> petr4-sa.

    The chart's ``petr4.tickerSlug`` helper spells it the same way."""
    return ticker.lower().replace(".", "-").replace("^", "")


@dataclass(frozen=True)
class ModelReference:
    """Which registered version serves a ticker: a pinned version, or the one an alias names."""

    name: str
    version: str = ""
    alias: str = ""

    @classmethod
    def for_ticker(cls, ticker: str, version: str = "", alias: str = CHAMPION_ALIAS):
        """The pinned ``version`` when given, else ``alias``."""
        return cls(registered_model_name(ticker), version, "" if version else alias)

    @property
    def uri(self) -> str:
        if self.version:
            return f"models:/{self.name}/{self.version}"
        return f"models:/{self.name}@{self.alias}"
