"""Select-only SQL models: each ``.sql`` file is a table named after the file; its upstream tables are
read from the SQL itself with sqlglot (CTE names excluded), and a leading ``-- group: NAME`` comment names its
asset group."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

DEFAULT_GROUP = "training"
_GROUP_COMMENT = re.compile(r"^--\s*group:\s*(\w+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class SQLModel:
    """One SQL file: its table name, select statement, upstream tables and code version."""

    name: str
    sql: str
    upstream: tuple[str, ...]
    code_version: str
    path: Path
    group: str = DEFAULT_GROUP


def upstream_tables(sql: str) -> tuple[str, ...]:
    """Tables a select statement reads, excluding its own CTEs; raises ``ValueError`` if it is not a select."""
    try:
        statements = sqlglot.parse(sql, read="duckdb")
    except sqlglot.errors.ParseError as error:
        raise ValueError(f"SQL does not parse: {error}") from error
    statements = [s for s in statements if s is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ValueError("a SQL model must be exactly one select statement")
    tree = statements[0]
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return tuple(sorted({t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes}))


def load_sql_model(path: Path) -> SQLModel:
    """Read and analyse one ``.sql`` file."""
    sql = path.read_text(encoding="utf-8").strip().rstrip(";")
    group = _GROUP_COMMENT.search(sql)
    return SQLModel(
        name=path.stem,
        sql=sql,
        upstream=upstream_tables(sql),
        code_version=hashlib.sha256(sql.encode()).hexdigest()[:16],
        path=path,
        group=group.group(1) if group else DEFAULT_GROUP,
    )


def discover_sql_models(directory: Path) -> list[SQLModel]:
    """Every ``.sql`` file under ``directory``, sorted by name."""
    return [load_sql_model(p) for p in sorted(directory.rglob("*.sql"))]
