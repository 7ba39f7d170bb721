"""How a served model did on the days after its training data, now that their closes are
known: out of sample (the model never saw those days). Its median against naive's and its
interval against the classic one, over the last ``window`` such days, replayed from the
prices at every load: a restart or a new version loses nothing. The realized-error alerts
read these."""

from __future__ import annotations

import pandas as pd

from services.core.forecaster import TickerModel
from services.core.scoring import RealizedRecord, classic_interval, realized_record


def realized(model: TickerModel, prices: pd.DataFrame, window: int) -> RealizedRecord | None:
    """The model's record on the last ``window`` days it had not been trained on; None before
    the first such day has its close."""
    trained_through = pd.Timestamp(model.fit.data.last_date or prices.index[-1])
    # Days after the training data; the last bar has no next close yet.
    unseen = prices.index[prices.index >= trained_through][:-1]
    if len(unseen) == 0:
        return None
    result = model.forecast(prices, unseen[-window:])  # from the bars it needs
    classic = classic_interval(prices, result.anchor_dates)
    return realized_record(
        result.actual, result.last_close, result.prices, classic, list(model.quantiles)
    )
