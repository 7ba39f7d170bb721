"""petr4-serve: the gRPC predictor.

Three thin layers: ``servicer`` converts proto <-> domain types; ``dataplane`` answers
requests without knowing about transport, from the states ``store`` keeps (models loaded by
``artifacts``, prices, and their refresh); ``forecasts`` is the arithmetic they share.
``server`` wires them with health, reflection, the error and metrics interceptor, and shutdown.
"""
