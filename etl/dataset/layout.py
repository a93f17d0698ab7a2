"""The dataset's layout, known here alone: where each shard goes, how a batch is written, which pages
are done, which files the views read.

    OUT/pages/engine=NAME/part-<batch_id>-<run_id>.parquet          a worker's page rows (commit mark)
    OUT/pages/engine=NAME/part-<batch_id>-<run_id>-c<k>.parquet     chunk k of a checkpointed batch
    OUT/pages/engine=NAME/part-<batch_id>-failed-<run_id>.parquet   rows the client wrote for a failed call
    OUT/pages/engine=NAME/part-<batch_id>-pending-<run_id>.parquet  pages a budget left for a rerun
    OUT/elements/engine=NAME/part-<same name>.parquet               the elements of those page rows
    OUT/embeddings/model=NAME/*.parquet                             page vectors (etl.read.embed)
    OUT/_search/                                                    the search index (etl.read.search)

Columns are in etl.dataset.schema; the views that read all this are sql/views.sql. A shard is written whole
or not at all (`storage.write_parquet_atomic`); a batch's elements before its pages, so a page row
is the commit mark that the views and resume trust.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from etl.dataset import storage
from etl.dataset.tasks import BatchTask, PageTask
from etl.dataset.schema import ID, STATUS_ERROR, STATUS_OK, element_table, page_table

if TYPE_CHECKING:
    import polars as pl

TABLES = ("pages", "elements")
# What a worker reports of each page (and what resume reads back from a checkpointed chunk).
PAGE_SUMMARY_KEYS = ("page_id", "status", "error_kind", "error", "duration_ms", "prompt_tokens",
                     "completion_tokens", "cost_usd", "lines_reread")
# The output's disk is full, read-only, over quota, or a path part is a file: no retry helps.
PERMANENT_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.ENOTDIR, errno.EDQUOT, errno.EFBIG}


def table_root(out: str, table: str, engine: str | None = None) -> str:
    """A table's folder (every engine's shards), or one engine's."""
    return storage.join(out, table, f"engine={engine}") if engine else storage.join(out, table)


def shard_uri(out: str, table: str, engine: str, name: str) -> str:
    return storage.join(out, table, f"engine={engine}", f"part-{name}.parquet")


def batch_shard_name(task: BatchTask) -> str:
    """A batch's shards are named by batch and run: a retried call of the run rewrites its own
    shards, while another run of the same batch (a rerun beside an orphaned runner, two runs at
    once) writes beside them, so however the writers interleave, a page row's elements are the
    ones of its run (the views join on run_id)."""
    return f"{task.batch_id}-{task.run_id}"


def chunk_shard_name(task: BatchTask, k: int) -> str:
    """Chunk k of a batch (see `process_batch`): the first has the batch's plain name."""
    return batch_shard_name(task) if k == 0 else f"{batch_shard_name(task)}-c{k}"


def chunks_of(task: BatchTask) -> list[list[PageTask]]:
    """The batch's pages cut into checkpoints of `task.checkpoint` pages (one chunk without it)."""
    pages = list(task.pages)
    size = task.checkpoint or len(pages) or 1
    return [pages[i:i + size] for i in range(0, len(pages), size)]


def client_rows_name(task: BatchTask, status: str) -> str:
    """The shard of rows the client writes for a batch's pages (a failed call, pages left pending):
    a name of its own, never over a worker's shard, which may exist if the call finished but its
    result was lost; the views prefer any success over these rows."""
    return f"{task.batch_id}-{'failed' if status == STATUS_ERROR else status}-{task.run_id}"


def checkpointed(task: BatchTask) -> dict[str, dict]:
    """Page id -> page summary for the chunks of this batch and run already written: by an earlier
    attempt of this call (killed for memory or time), or before the call was lost."""
    import pyarrow.parquet as pq

    done: dict[str, dict] = {}
    for k in range(len(chunks_of(task))):
        fs, path = storage.url_to_fs(shard_uri(task.out, "pages", task.engine, chunk_shard_name(task, k)))
        try:
            if not fs.exists(path):
                continue
            with fs.open(path, "rb") as f:
                table = pq.read_table(f)
        except Exception:  # unreadable: read those pages again (a later run sets the file aside)
            continue
        for row in table.select([c for c in PAGE_SUMMARY_KEYS if c in table.column_names]).to_pylist():
            done[str(row["page_id"])] = row
    return done


def page_row(task: BatchTask, page: PageTask, **fields) -> dict:
    """A page row of `task` (the one way both the worker and the client make one): the page, its
    batch and reading, and `fields` (status, error, text, ...); columns in etl.dataset.schema."""
    return {"page_id": page.page_id, "image_uri": page.image_uri, "engine": task.engine,
            "config_hash": task.config_hash, "run_id": task.run_id, "batch_id": task.batch_id, "extra": page.extra,
            "reread_of": task.reread_of, "lines_reread": len(page.lines) if page.lines is not None else None,
            **fields}


def write_batch(out: str, engine: str, name: str, page_rows: list[dict], element_rows: list[dict],
                extra_columns: list[str]) -> None:
    """A batch's (or a chunk's) shards: elements first, pages last: a page row is the commit mark the
    views and resume trust, and elements without their page row are never shown."""
    if element_rows:
        storage.write_parquet_atomic(element_table(element_rows), shard_uri(out, "elements", engine, name))
    storage.write_parquet_atomic(page_table(page_rows, extra_columns), shard_uri(out, "pages", engine, name))


def write_page_rows(out: str, engine: str, name: str, rows: list[dict], extra_columns: list[str]) -> None:
    """Page rows without elements (error and pending rows the client writes)."""
    storage.write_parquet_atomic(page_table(rows, extra_columns), shard_uri(out, "pages", engine, name))


def sound_files(out: str, table: str, engine: str | None = None):
    """(filesystem, readable shard paths, {damaged path: why}) of a table, or of one engine's part."""
    return storage.sound_parquet(table_root(out, table, engine))


def set_aside_damaged(out: str, engine: str) -> list[str]:
    """Rename this engine's unreadable shards (and the page shard of a batch whose elements shard
    is unreadable: its page rows promise elements that are gone) to `*.parquet.damaged`, which no
    reader globs, so that resume counts their pages as not done and the rerun writes them anew.
    Returns one line per shard set aside, naming the file and the reason."""
    lines = []
    for table in TABLES:
        fs, _, damaged = sound_files(out, table, engine)
        for path, why in damaged.items():
            targets = [path]
            if table == "elements":
                sibling = path.replace(f"/elements/engine={engine}/", f"/pages/engine={engine}/")
                if sibling != path and fs.exists(sibling):
                    targets.append(sibling)
            for target in targets:
                fs.mv(target, target + ".damaged")
            lines.append(f"damaged shard set aside: {path} ({why})"
                         + (f"; its page shard too: {targets[1]}" if len(targets) > 1 else "")
                         + "; its pages will be read again")
    return lines


def done_page_ids(out: str, engine: str, cfg_hash: str) -> pl.Series:
    """Page ids that already have a successful row for this engine and options (on the client:
    Polars, and pyarrow.dataset for object stores, are imported here, not where a worker imports
    this module). Not made unique: `pending` only tests membership, and retried pages repeat rarely."""
    import polars as pl

    fs, files = storage.glob_parquet(table_root(out, "pages", engine))
    if not files:
        return pl.Series(ID, [], dtype=pl.String)
    if isinstance(fs, storage.LocalFileSystem):  # Polars reads local shards itself, without pyarrow.dataset's import
        wanted = {ID: pl.String, "status": pl.String, "config_hash": pl.String}
        return (pl.scan_parquet(files, schema=wanted, hive_partitioning=False, missing_columns="insert",
                                extra_columns="ignore")
                .filter((pl.col("status") == STATUS_OK) & (pl.col("config_hash") == cfg_hash))
                .select(ID).collect().to_series())
    import pyarrow.dataset as pads

    dataset = pads.dataset(files, filesystem=fs, format="parquet")
    table = dataset.to_table(
        columns=[ID],
        filter=(pads.field("status") == STATUS_OK) & (pads.field("config_hash") == cfg_hash),
    )
    return pl.from_arrow(table.column(ID)).alias(ID)




def copy_reading(src: str, dst: str, engine: str, cfg_hash: str) -> int:
    """Copy into a new dataset `dst` the shards of one reading of `src` (this engine, these options),
    elements with their pages; the shards of other readings stay behind, so that in `dst` this
    reading is every page's best. Returns the number of page shards copied."""
    import pyarrow.parquet as pq

    fs, files, _ = sound_files(src, "pages", engine)
    copied = 0
    for path in files:
        if cfg_hash not in pq.read_table(path, columns=["config_hash"], filesystem=fs)["config_hash"].to_pylist():
            continue
        name = path.rsplit("/", 1)[-1].removeprefix("part-").removesuffix(".parquet")
        for table in TABLES:
            source = path if table == "pages" else shard_uri(src, table, engine, name)
            if table == "pages" or fs.exists(source):
                fs.makedirs(table_root(dst, table, engine), exist_ok=True)
                fs.copy(source, shard_uri(dst, table, engine, name))
        copied += 1
    return copied
