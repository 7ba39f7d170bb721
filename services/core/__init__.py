"""The small shared core used by every service and the trainer."""
