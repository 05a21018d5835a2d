"""Dagster assets of relabel, one module per pipeline stage; ``definitions.defs`` is the code location."""
