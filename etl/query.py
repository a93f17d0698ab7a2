"""DuckDB over the dataset: raw shards as `raw_pages`/`raw_elements`, then the views in sql/views.sql."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from etl import storage
from etl.schema import ELEMENT_SCHEMA, PAGE_SCHEMA

SQL_DIR = Path(os.environ.get("COMIC_OCR_SQL_DIR", Path(__file__).resolve().parent.parent / "sql"))


def connect(out: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views `pages`, `elements`, `page_text` over dataset `out`."""
    con = con or duckdb.connect()
    for table, schema in (("pages", PAGE_SCHEMA), ("elements", ELEMENT_SCHEMA)):
        root = storage.join(out, table)
        fs, files = storage.glob_parquet(root)
        if not files:
            con.register(f"_empty_{table}", pa.Table.from_pylist([], schema=schema))
            con.execute(f"CREATE OR REPLACE VIEW raw_{table} AS SELECT * FROM _empty_{table}")
            continue
        if isinstance(fs, LocalFileSystem):
            pattern = os.path.join(os.path.abspath(storage.url_to_fs(root)[1]), "**", "*.parquet")
        else:
            # Object stores through fsspec: no DuckDB extension download needed (air-gapped).
            if not con.filesystem_is_registered(fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol):
                con.register_filesystem(fs)
            pattern = storage.join(out, table) + "/**/*.parquet"
        con.execute(
            f"CREATE OR REPLACE VIEW raw_{table} AS SELECT * FROM read_parquet('{_quote(pattern)}', "
            "union_by_name = true, hive_partitioning = false)"
        )
    con.execute((SQL_DIR / "views.sql").read_text())
    return con


def query(out: str, sql: str):
    """Run SQL over the dataset's views; returns a Polars DataFrame."""
    con = connect(out)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def _quote(s: str) -> str:
    return s.replace("'", "''")
