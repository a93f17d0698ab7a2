"""Plan a run: which pages still need work, cut into deterministic batches.

Batches keep manifest order. A batch id is a hash of the engine, the options'
hash and the batch's page ids, so a retried batch rewrites the same shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import polars as pl
import pyarrow.dataset as pads

from etl import storage
from etl.manifest import ID, URI
from etl.schema import STATUS_OK


@dataclass
class Batch:
    batch_id: str
    pages: list[dict]  # {"page_id", "image_uri", "extra": {...}}


def config_hash(engine: str, options) -> str:
    """Hash of the engine and its options: same hash = same results expected."""
    payload = json.dumps({"engine": engine, "options": dataclasses.asdict(options)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def done_page_ids(out: str, engine: str, cfg_hash: str) -> pl.Series:
    """Page ids that already have a successful row for this engine and options."""
    fs, files = storage.glob_parquet(storage.join(out, "pages", f"engine={engine}"))
    if not files:
        return pl.Series(ID, [], dtype=pl.String)
    dataset = pads.dataset(files, filesystem=fs, format="parquet")
    table = dataset.to_table(
        columns=[ID],
        filter=(pads.field("status") == STATUS_OK) & (pads.field("config_hash") == cfg_hash),
    )
    return pl.from_arrow(table.column(ID)).unique().alias(ID)


def pending(manifest: pl.DataFrame, done: pl.Series) -> pl.DataFrame:
    if done.is_empty():
        return manifest
    return manifest.join(done.to_frame(), on=ID, how="anti", maintain_order="left")


def choose_batch_size(n_pages: int, workers: int, default: int) -> int:
    """The engine's default, but small enough that every worker gets a batch."""
    if n_pages <= 0:
        return default
    per_worker = -(-n_pages // max(1, workers))
    return max(1, min(default, per_worker))


def make_batches(df: pl.DataFrame, size: int, engine: str, cfg_hash: str) -> list[Batch]:
    extras = [c for c in df.columns if c not in (ID, URI)]
    ids = df[ID].to_list()
    uris = df[URI].to_list()
    extra_rows = df.select(extras).rows(named=True) if extras else None
    batches = []
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{engine}\0{cfg_hash}\0".encode())
        for pid in chunk:
            h.update(pid.encode())
            h.update(b"\0")
        pages = [
            {"page_id": pid, "image_uri": uris[start + i], "extra": extra_rows[start + i] if extra_rows else {}}
            for i, pid in enumerate(chunk)
        ]
        batches.append(Batch(h.hexdigest(), pages))
    return batches
