"""Synthetic queries: writing them with an LLM, filtering them, and measuring the query set."""
