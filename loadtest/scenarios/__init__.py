"""Locust scenarios; ``python -m loadtest.scenarios NAME`` runs one end to end (see its docstring)."""
