"""Plan a run: which pages still need work, cut into deterministic batches.

Batches keep manifest order. A batch id is a hash of the engine, the options'
hash and the batch's page ids, so a retried batch rewrites the same shard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from etl.cost.batching import choose_batch_size
from etl.cost.prices import call_overhead_s, engine_seconds
from etl.dataset.tasks import PageTask
from etl.dataset.manifest import ID, URI


HASH_SEED = 0x636F6D6963  # "comic"
GOLDEN = 0x9E3779B97F4A7C15  # spreads the batch length over the id


@dataclass(slots=True)
class Batch:
    batch_id: str
    frame: pl.DataFrame  # the planned pages (page_id, image_uri, extras); this batch is a window of it
    offset: int
    length: int

    @property
    def rows(self) -> pl.DataFrame:
        return self.frame.slice(self.offset, self.length)

    def pages(self) -> list[PageTask]:
        """The task's pages, each with its manifest extras."""
        extras = [c for c in self.frame.columns if c not in (ID, URI)]
        return [PageTask(page_id=r[ID], image_uri=r[URI], extra={c: r[c] for c in extras})
                for r in self.rows.iter_rows(named=True)]


def config_hash(engine: str, options, reread: dict | None = None) -> str:
    """Hash of the engine and its options (and, for a cascade stage, which lines of which reading it
    re-reads): same hash = same results expected."""
    from engines.base import hash_view

    payload = {"engine": engine, "options": hash_view(options)}
    if reread:
        payload["reread"] = reread
    payload = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def pending(manifest: pl.DataFrame, done: pl.Series) -> pl.DataFrame:
    if done.is_empty():
        return manifest
    return manifest.filter(~pl.col(ID).is_in(done.implode()))


def planned_batch_size(engine_cls, options, n_pages: int, workers: int, backend: str) -> int:
    """The batch size a run picks when none is given: `choose_batch_size` with the engine's
    cost hint on this backend (a localhost runner preloads the engine's modules)."""
    load_s, page_s = engine_seconds(engine_cls, options, preloaded=backend == "localhost")
    return choose_batch_size(n_pages, workers, load_s, page_s, engine_cls.max_batch_size,
                             call_s=call_overhead_s(backend), floor=engine_cls.concurrency(options))


SIZE_ORDER_MAX_PAGES = 20_000  # one stat a page; past this the tail is a small share of the run


def costliest_first(tasks):
    """The tasks (a `TaskList`) in order of their images' bytes, largest first, when every image is
    a local file: the calls that start last are then the shortest, and the workers finish together
    (longest-processing-time-first) instead of one reading a large batch while the others idle.
    Any other run keeps manifest order (a stat of an object store costs a request a page)."""
    import os

    from etl.dataset.storage import local_path

    if len(tasks) < 2 or sum(b.length for b in tasks.batches) > SIZE_ORDER_MAX_PAGES:
        return tasks
    sizes = []
    for i in range(len(tasks)):
        total = 0
        for uri in tasks.batches[tasks.order[i]].rows[URI]:
            if (path := local_path(str(uri))) is None:
                return tasks
            try:
                total += os.stat(path).st_size
            except (OSError, ValueError):  # a missing or odd file: its page fails fast
                pass
        sizes.append(total)
    return tasks.reordered(sorted(range(len(tasks)), key=lambda i: -sizes[i]))  # stable: ties keep manifest order


class Batches(Sequence):
    """The planned batches, made on access: a million-page plan holds two lists of numbers."""

    def __init__(self, frame: pl.DataFrame, size: int, ids: list[int], lengths: list[int]):
        self.frame, self.size, self._ids, self._lengths = frame, size, ids, lengths

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        return Batch(f"{self._ids[i]:016x}", self.frame, i * self.size, self._lengths[i])


def make_batches(df: pl.DataFrame, size: int, engine: str, cfg_hash: str) -> Batches:
    """Cut `df` into batches of `size` pages in order.

    A batch id is derived from the batch's content: a hash of its page ids combined
    with the engine and the options' hash, so a retried batch rewrites its own shard.
    Ids come from Polars' seeded hash (vectorised: a million pages plan in well under
    a second); Polars does not promise that hash across its versions, which can only
    give new shard names after an upgrade, never overwrite another batch's shard.
    """
    if df.is_empty():
        return Batches(df, size, [], [])
    hashes = df.select(pl.col(ID).hash(HASH_SEED)).to_series().to_numpy()
    starts = np.arange(0, len(hashes), size)
    lengths = np.diff(np.append(starts, len(hashes))).astype(np.uint64)
    salt = int.from_bytes(hashlib.blake2b(f"{engine}\0{cfg_hash}".encode(), digest_size=8).digest(), "big")
    # uint64 arithmetic wraps, as Polars' sums did: the same ids as before this was NumPy.
    ids = np.add.reduceat(hashes, starts) ^ np.uint64(salt) ^ (lengths * np.uint64(GOLDEN))
    return Batches(df, size, ids.tolist(), lengths.tolist())
