"""Offline evaluation: time splits, top-k metrics, baseline models, the report."""
