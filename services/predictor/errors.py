"""Errors a caller can act on. The interceptor maps them to gRPC status codes."""


class ForecastError(Exception):
    """Base class: the message is safe to show to the caller."""


class InvalidInput(ForecastError):
    """The request breaks a rule; the message names it."""


class ModelNotFound(ForecastError):
    """No model serves the requested ticker."""


class ModelNotReady(ForecastError):
    """Models are still loading, or the server is shutting down."""
