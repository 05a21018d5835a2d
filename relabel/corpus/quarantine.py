"""``seed_corpus_quarantine``: the files of a full corpus scan that could not be ingested, with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

QUARANTINE_TABLE = "seed_corpus_quarantine"
QUARANTINE_DDL = (
    f"create table if not exists {QUARANTINE_TABLE} "
    "(doc_id varchar, reason varchar, seen_at timestamp default current_timestamp)"
)


def store_quarantine(conn: Any, rejects: Sequence[dict[str, str]]) -> int:
    """Record this scan's rejects (``{doc_id, reason}``) on a DuckDB connection; a file quarantined again gets
    its new reason, and earlier rows of other files stay. Returns the rows written."""
    conn.execute(QUARANTINE_DDL)
    frame = pd.DataFrame(list(rejects), columns=["doc_id", "reason"])
    conn.register("_rejects", frame)
    try:
        conn.execute(f"delete from {QUARANTINE_TABLE} where doc_id in (select doc_id from _rejects)")
        conn.execute(f"insert into {QUARANTINE_TABLE} (doc_id, reason) select doc_id, reason from _rejects")
    finally:
        conn.unregister("_rejects")
    return len(frame)
