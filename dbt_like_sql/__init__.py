"""Select-only SQL models; each file becomes a DuckDB table asset named after it."""
