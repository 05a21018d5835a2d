"""Dagster sensors of relabel."""
