"""The trainer's user-facing errors, importable before torch: a mistake is reported fast."""


class DataError(ValueError):
    """The prices cannot support the requested tickers, window and splits."""


class ExportError(RuntimeError):
    """The ONNX graph does not reproduce the torch network."""
