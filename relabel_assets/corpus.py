"""seed_corpus: the company's documents (demo corpus or a folder, plus the inbox) as one table."""

import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from relabel.corpus.documents import Document, scan_directory
from relabel.corpus.quarantine import store_quarantine
from relabel_assets.common import WRITER_POOL, guard_full_rebuild, write_asset_table
from resources.settings import PipelineSettings

DOC_COLUMNS = list(Document.__dataclass_fields__)


@dg.asset(kinds={"duckdb", "python"}, pool=WRITER_POOL, group_name="corpus")
def seed_corpus(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: PipelineSettings
) -> dg.MaterializeResult:
    """Seed documents with enterprise metadata (title, author, path, modified date, type), parsed from
    md, txt, html, json and eml files of the corpus folder and the inbox. Files that cannot be read go
    to ``seed_corpus_quarantine`` with the reason; at most ``max_doc_bytes`` of a file are read (``truncated``
    marks the rest), and the detected ``encoding`` is kept."""
    started = time.perf_counter()
    guard_full_rebuild(duckdb, settings.rebootstrap, "seed_corpus")
    documents, quarantined = scan_directory(settings.corpus_path(), max_bytes=settings.max_doc_bytes)
    inbox_docs, inbox_quarantined = scan_directory(
        settings.inbox_path(), prefix="inbox/", max_bytes=settings.max_doc_bytes
    )
    documents += inbox_docs
    quarantined += inbox_quarantined
    frame = pd.DataFrame([d.as_row() for d in documents], columns=DOC_COLUMNS)
    for row in quarantined:
        context.log.warning(f"quarantined {row['doc_id']}: {row['reason']}")
    with duckdb.get_connection() as conn:
        store_quarantine(conn, quarantined)
    return write_asset_table(
        duckdb,
        "seed_corpus",
        frame,
        started,
        quarantined=dg.MetadataValue.int(len(quarantined)),
        formats=dg.MetadataValue.json(frame["format"].value_counts().to_dict()),
        inbox_documents=dg.MetadataValue.int(len(inbox_docs)),
        truncated=dg.MetadataValue.int(int(frame["truncated"].sum())),
        encodings=dg.MetadataValue.json(frame["encoding"].value_counts().to_dict()),
    )
