"""DuckDB over the dataset: raw shards as `raw_pages`/`raw_elements`, then the views in sql/views.sql."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from etl.dataset import layout as dataset, storage
from etl.dataset.schema import ELEMENT_SCHEMA, EMBEDDING_SCHEMA as SCHEMA, EMBEDDINGS_DIR, PAGE_SCHEMA

# sql/ at the top of the checkout, shipped in the wheel as etl/_data/sql (a link to it).
SQL_DIR = Path(os.environ.get("COMIC_OCR_SQL_DIR", Path(__file__).resolve().parents[1] / "_data" / "sql"))


def sql_file(name: str) -> Path:
    """A SQL file by path, else by name among the bundled ones (`file=sql/errors.sql` works anywhere)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = SQL_DIR / path.name
    return bundled if bundled.is_file() else path


def connect(out: str, con: duckdb.DuckDBPyConnection | None = None,
            on_warning: Callable[[str], None] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views `pages`, `elements`, `page_text` over dataset `out`, and
    the SQL function `doubtful_text(text, lang)` (`etl.dataset.lexicon`).

    A damaged shard is left out of the views, named in a warning (`on_warning`, else Python's
    warnings); a rerun of the run that wrote it sets it aside and reads its pages again.
    """
    from etl.dataset import lexicon

    con = con or duckdb.connect()
    lexicon.register(con)  # doubtful_text(text, lang), for a cascade's `when`
    for table, schema in (("pages", PAGE_SCHEMA), ("elements", ELEMENT_SCHEMA)):
        root = dataset.table_root(out, table)
        fs, files, damaged = dataset.sound_files(out, table)
        for path, why in damaged.items():
            (on_warning or warnings.warn)(f"damaged shard left out of the views: {path} ({why}); "
                                          "rerun the run that wrote it to read its pages again")
        # Unioned by name with an empty table of today's schema: shards written before a column
        # existed read it as null, and the views can name every column.
        con.register(f"_empty_{table}", pa.Table.from_pylist([], schema=schema))
        typed = f" UNION ALL BY NAME SELECT * FROM _empty_{table}"
        if not files:  # none yet, or none readable
            con.execute(f"CREATE OR REPLACE VIEW raw_{table} AS SELECT * FROM _empty_{table}")
            continue
        if damaged:  # the sound files by name: a glob would take the damaged ones too
            if not isinstance(fs, LocalFileSystem) and not con.filesystem_is_registered(_protocol(fs)):
                con.register_filesystem(fs)
            names = ", ".join(f"'{_quote(f if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(f))}'"
                              for f in files)
            con.execute(f"CREATE OR REPLACE VIEW raw_{table} AS SELECT * FROM read_parquet([{names}], "
                        "union_by_name = true, hive_partitioning = false)" + typed)
            continue
        if isinstance(fs, LocalFileSystem):
            pattern = os.path.join(os.path.abspath(storage.url_to_fs(root)[1]), "**", "*.parquet")
        else:
            # Object stores through fsspec: no DuckDB extension download needed (air-gapped).
            if not con.filesystem_is_registered(_protocol(fs)):
                con.register_filesystem(fs)
            pattern = root + "/**/*.parquet"
        con.execute(
            f"CREATE OR REPLACE VIEW raw_{table} AS SELECT * FROM read_parquet('{_quote(pattern)}', "
            "union_by_name = true, hive_partitioning = false)" + typed
        )
    con.execute((SQL_DIR / "views.sql").read_text())
    _embeddings_view(con, out, on_warning or warnings.warn)
    return con


def _embeddings_view(con: duckdb.DuckDBPyConnection, out: str, warn: Callable[[str], None]) -> None:
    """`embeddings` (page_id, engine, config_hash, model, vector) from OUT/embeddings/, empty when none.
    A file that cannot be read (truncated, damaged) is left out, named in a warning."""
    fs, files, damaged = storage.sound_parquet(storage.join(out, EMBEDDINGS_DIR))
    for path, why in damaged.items():
        warn(f"damaged embeddings file left out of the `embeddings` view: {path} ({why}); "
             "write it again (`just embed` for the built-in vectors)")
    if not files:
        con.register("_empty_embeddings", pa.Table.from_pylist([], schema=SCHEMA))
        con.execute("CREATE OR REPLACE VIEW embeddings AS SELECT * FROM _empty_embeddings")
        return
    if not isinstance(fs, LocalFileSystem):
        if not con.filesystem_is_registered(_protocol(fs)):
            con.register_filesystem(fs)
        files = [fs.unstrip_protocol(f) for f in files]
    names = ", ".join(f"'{_quote(f)}'" for f in files)
    con.execute(f"CREATE OR REPLACE VIEW embeddings AS SELECT * FROM read_parquet([{names}], union_by_name = true, "
                "hive_partitioning = false)")


def condition(sql: str, what: str = "where") -> str:
    """A user's SQL condition (`where=`, `when=`, `pages_when=`) as one expression, rendered again by
    DuckDB's parser: several statements (`true; COPY ... TO 'file'`), a parenthesis that closes the
    query's own, or a comment that cuts the rest are refused (UsageError) before it is run."""
    from etl.errors import UsageError

    try:
        return str(duckdb.SQLExpression(sql))
    except duckdb.Error as exc:
        raise UsageError(f"{what}={sql!r} is not one SQL condition: {exc}") from None


def query(out: str, sql: str):
    """Run SQL over the dataset's views; returns a Polars DataFrame."""
    con = connect(out)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def _protocol(fs) -> str:
    return fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol


def _quote(s: str) -> str:
    return s.replace("'", "''")
