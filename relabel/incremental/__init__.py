"""Incremental relabeling without Dagster, in three parts: ``batches`` (the watched folder, batch snapshots and
manifests), ``rules`` (pure decisions: document versions, which pairs are new, teacher sampling and routing,
how labels merge, when the student is stale, which queries retire) and ``label_store`` (the versioned DuckDB
tables, their schemas and SQL, taking a connection). BM25 token reuse and re-retrieval live in
``relabel.retrieval``."""
