"""petr4-secrets: the chart's own Secrets, made once inside the cluster."""
