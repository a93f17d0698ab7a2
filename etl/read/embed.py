"""Page embeddings: a table any model can fill, joined to the dataset on page_id.

The table is Parquet under `OUT/embeddings/` with columns page_id, engine, config_hash, model and
vector (FLOAT[]), which `etl.dataset.views.connect` shows as the `embeddings` view; write your own model's
vectors there in that shape (one file per model or run) and `sql/join_embeddings.sql` finds the
nearest pages. `embed_pages` fills it offline with no model weights at all: hashed character
trigrams of the page text (NFKC, case-folded), log-scaled and L2-normalised, so it reads English
and Japanese alike. It finds pages that share wording (reprints, translations' names, recurring
captions), not meaning; a sentence-embedding model does better where one is installed.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from typing import Callable

import pyarrow as pa

from etl.dataset import storage
from etl.dataset.schema import EMBEDDING_SCHEMA as SCHEMA, EMBEDDINGS_DIR

HASHED_MODEL = "hashed-char3-256"
DIM = 256


def hashed_vector(text: str, dim: int = DIM) -> list[float]:
    """Character trigrams of `text` (spaces collapsed) hashed into `dim` signed buckets, L2-normalised."""
    norm = " ".join(unicodedata.normalize("NFKC", text or "").casefold().split())
    vec = [0.0] * dim
    for i in range(max(0, len(norm) - 2)):
        h = int.from_bytes(hashlib.blake2b(norm[i:i + 3].encode(), digest_size=8).digest(), "little")
        vec[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    vec = [math.copysign(math.log1p(abs(v)), v) for v in vec]
    length = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / length for v in vec]


def embed_pages(out: str, engine: str | None = None, on_warning: Callable[[str], None] | None = None) -> int:
    """Write hashed embeddings of every page read in `out` (optionally one engine's); returns the count.
    A rerun replaces this model's file, so the table holds one vector per page, engine and options.
    Damaged shards and embeddings files are left out, each named to `on_warning`."""
    from etl.dataset.views import connect

    con = connect(out, on_warning=on_warning or (lambda w: None))
    try:
        rows = con.execute("select page_id, engine, config_hash, text from page_text where ($e is null or engine = $e) "
                           "order by page_id", {"e": engine}).fetchall()
    finally:
        con.close()
    table = pa.table({"page_id": [r[0] for r in rows], "engine": [r[1] for r in rows], "config_hash": [r[2] for r in rows],
                      "model": [HASHED_MODEL] * len(rows), "vector": [hashed_vector(r[3]) for r in rows]}, schema=SCHEMA)
    name = f"{HASHED_MODEL}-{engine or 'all'}.parquet"
    storage.write_parquet_atomic(table, storage.join(out, EMBEDDINGS_DIR, f"model={HASHED_MODEL}", name))
    return len(rows)
