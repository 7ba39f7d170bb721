"""petr4-accounts: each component's MLflow user, with least privilege."""
