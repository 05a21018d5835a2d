"""Dagster resources of relabel: DuckDB warehouse, LLM gateway, model store and pipeline settings."""
