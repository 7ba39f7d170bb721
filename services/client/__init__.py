"""petr4-forecast: the command-line client, and the importable client class it uses."""
