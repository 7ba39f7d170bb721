"""petr4-serve: the gRPC predictor.

Three thin layers: ``servicer`` converts proto <-> domain types, ``core`` does the work
without knowing about transport, and ``model`` owns the loaded artifacts. ``server``
wires them with health, reflection, the error and metrics interceptor, and shutdown.
"""
