"""petr4-ingest: refreshes daily prices and commits validated snapshots to MLflow."""
