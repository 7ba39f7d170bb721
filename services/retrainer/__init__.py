"""petr4-retrain: the retraining receiver. Alertmanager's webhook in, training Jobs out.

``webhook`` checks who calls and what they send, ``jobs`` starts a Job from the chart's own
template through the Kubernetes API (one at a time per ticker, once per cooldown).
"""
