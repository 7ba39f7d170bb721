from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Bar(_message.Message):
    __slots__ = ("date", "open", "high", "low", "close", "volume")
    DATE_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    def __init__(self, date: _Optional[str] = ..., open: _Optional[float] = ..., high: _Optional[float] = ..., low: _Optional[float] = ..., close: _Optional[float] = ..., volume: _Optional[float] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("ticker", "history")
    TICKER_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    history: _containers.RepeatedCompositeFieldContainer[Bar]
    def __init__(self, ticker: _Optional[str] = ..., history: _Optional[_Iterable[_Union[Bar, _Mapping]]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "run_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    run_id: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class PredictionInterval(_message.Message):
    __slots__ = ("lower", "upper", "level")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    lower: float
    upper: float
    level: float
    def __init__(self, lower: _Optional[float] = ..., upper: _Optional[float] = ..., level: _Optional[float] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("ticker", "last_date", "last_close", "target_date", "predicted_close", "change_pct", "interval", "model", "synthetic_data")
    TICKER_FIELD_NUMBER: _ClassVar[int]
    LAST_DATE_FIELD_NUMBER: _ClassVar[int]
    LAST_CLOSE_FIELD_NUMBER: _ClassVar[int]
    TARGET_DATE_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLOSE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PCT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_DATA_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    last_date: str
    last_close: float
    target_date: str
    predicted_close: float
    change_pct: float
    interval: PredictionInterval
    model: ModelRef
    synthetic_data: bool
    def __init__(self, ticker: _Optional[str] = ..., last_date: _Optional[str] = ..., last_close: _Optional[float] = ..., target_date: _Optional[str] = ..., predicted_close: _Optional[float] = ..., change_pct: _Optional[float] = ..., interval: _Optional[_Union[PredictionInterval, _Mapping]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., synthetic_data: _Optional[bool] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ("ticker",)
    TICKER_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    def __init__(self, ticker: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("ticker", "model", "uri", "trained_at", "data_first_date", "data_last_date", "synthetic_data", "window", "min_history_bars", "quantiles", "interval_level", "test_metrics", "naive_metrics", "prices_last_date", "trained_on", "ready", "not_ready_reason")
    class TestMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class NaiveMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TICKER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    TRAINED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIRST_DATE_FIELD_NUMBER: _ClassVar[int]
    DATA_LAST_DATE_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_DATA_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MIN_HISTORY_BARS_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    NAIVE_METRICS_FIELD_NUMBER: _ClassVar[int]
    PRICES_LAST_DATE_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    NOT_READY_REASON_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    model: ModelRef
    uri: str
    trained_at: str
    data_first_date: str
    data_last_date: str
    synthetic_data: bool
    window: int
    min_history_bars: int
    quantiles: _containers.RepeatedScalarFieldContainer[float]
    interval_level: float
    test_metrics: _containers.ScalarMap[str, float]
    naive_metrics: _containers.ScalarMap[str, float]
    prices_last_date: str
    trained_on: _containers.RepeatedScalarFieldContainer[str]
    ready: bool
    not_ready_reason: str
    def __init__(self, ticker: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., uri: _Optional[str] = ..., trained_at: _Optional[str] = ..., data_first_date: _Optional[str] = ..., data_last_date: _Optional[str] = ..., synthetic_data: _Optional[bool] = ..., window: _Optional[int] = ..., min_history_bars: _Optional[int] = ..., quantiles: _Optional[_Iterable[float]] = ..., interval_level: _Optional[float] = ..., test_metrics: _Optional[_Mapping[str, float]] = ..., naive_metrics: _Optional[_Mapping[str, float]] = ..., prices_last_date: _Optional[str] = ..., trained_on: _Optional[_Iterable[str]] = ..., ready: _Optional[bool] = ..., not_ready_reason: _Optional[str] = ...) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
