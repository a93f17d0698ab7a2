"""Full-text search over a dataset's lines: offline, incremental, Japanese-aware.

The index is Parquet beside the shards, one index file per elements shard
(`OUT/_search/<engine folder>/<shard name>`), so a run that adds shards adds index files and
nothing is rebuilt; a shard rewritten since (a retried call) is indexed again, and the index
file of a shard that is gone is dropped. Tokens: NFKC, case-folded words for scripts with
spaces; character bigrams (unigrams for a lone character) for Japanese and Chinese, which have
no spaces to split on. Ranking is BM25 over lines, plus a bonus for lines that hold the query
as a phrase; only the rows the `elements` view shows (the chosen run of each page) are found.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from engines.lang import CJK
from etl.dataset import storage

INDEX_DIR = "_search"
INDEX_SCHEMA = pa.schema([
    ("token", pa.string()), ("page_id", pa.string()), ("engine", pa.string()), ("run_id", pa.string()),
    ("batch_id", pa.string()), ("reading_order", pa.int32()), ("tf", pa.int32()), ("line_len", pa.int32()),
])
_CJK = CJK
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")


def tokens(text: str) -> list[str]:
    """Search tokens of `text`: words, and character bigrams of CJK runs."""
    out: list[str] = []
    for run in _TOKEN.findall(unicodedata.normalize("NFKC", text or "").casefold()):
        if _IS_CJK.match(run):
            out += [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]
        else:
            out.append(run)
    return out


def normalize(text: str) -> str:
    """What phrase matching compares: NFKC, case-folded, spaces and punctuation dropped."""
    return "".join(_TOKEN.findall(unicodedata.normalize("NFKC", text or "").casefold()))


def _index_table(elements: pa.Table) -> pa.Table:
    rows: dict[str, list] = {name: [] for name in INDEX_SCHEMA.names}
    lines = elements.filter(pa.compute.equal(elements["level"], "line"))
    cols = lines.select(["text", "page_id", "engine", "run_id", "batch_id", "reading_order"]).to_pydict()
    for i, text in enumerate(cols["text"]):
        toks = tokens(text)
        counts: dict[str, int] = {}
        for t in toks:
            counts[t] = counts.get(t, 0) + 1
        for tok, n in counts.items():
            rows["token"].append(tok)
            for key in ("page_id", "engine", "run_id", "batch_id", "reading_order"):
                rows[key].append(cols[key][i])
            rows["tf"].append(n)
            rows["line_len"].append(len(toks))
    return pa.Table.from_pydict(rows, schema=INDEX_SCHEMA)


@dataclass
class Refresh:
    indexed: int  # shards indexed now (new or rewritten)
    kept: int  # shards whose index was already current
    dropped: int  # index files of shards that are gone


def refresh_index(out: str, on_warning: Callable[[str], None] | None = None) -> Refresh:
    """Bring the index of dataset `out` up to date with its elements shards."""
    root = storage.join(out, "elements")
    fs, shards = storage.glob_parquet(root)
    base = storage.url_to_fs(root)[1].rstrip("/")
    index_root = storage.join(out, INDEX_DIR)
    ifs, ibase = storage.url_to_fs(index_root)
    ibase = ibase.rstrip("/")
    existing = set(storage.glob_parquet(index_root)[1])
    wanted, indexed, kept = set(), 0, 0
    for shard in shards:
        target = ibase + shard[len(base):]
        wanted.add(target)
        if target in existing and _modified(ifs, target) >= _modified(fs, shard):
            kept += 1
            continue
        try:
            with fs.open(shard, "rb") as f:
                table = pq.read_table(f, columns=["text", "page_id", "engine", "run_id", "batch_id", "reading_order",
                                                  "level"])
        except Exception as exc:  # a damaged shard (the views leave it out too): the rest is indexed
            if on_warning:
                on_warning(f"shard not indexed: {shard} ({type(exc).__name__}: {exc})")
            continue
        storage.write_parquet_atomic(_index_table(table), ifs.unstrip_protocol(target) if _remote(ifs) else target)
        indexed += 1
    gone = existing - wanted
    for path in gone:
        ifs.rm(path)
    return Refresh(indexed, kept, len(gone))


def _remote(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return not isinstance(fs, LocalFileSystem)


def _modified(fs, path: str) -> float:
    try:
        return fs.modified(path).timestamp()
    except (NotImplementedError, OSError, AttributeError):
        return 0.0


def search(out: str, q: str, limit: int = 10, engine: str | None = None, refresh: bool = True,
           on_warning: Callable[[str], None] | None = None):
    """Lines of dataset `out` that match `q`, best first: a Polars frame with page_id, engine,
    score, the line's text and box (x0, y0, x1, y1) and its page's image_uri."""
    import polars as pl

    from etl.errors import UsageError
    from etl.dataset.views import connect

    toks = sorted(set(tokens(q)))
    if not toks:
        raise UsageError(f"q={q!r}: nothing to search for (no words or characters)")
    if refresh:
        refresh_index(out, on_warning)
    con = connect(out, on_warning=on_warning)
    try:
        _, files = storage.glob_parquet(storage.join(out, INDEX_DIR))
        if not files:
            return pl.DataFrame()
        fs, _ = storage.url_to_fs(out)
        if _remote(fs):
            if not con.filesystem_is_registered(fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol):
                con.register_filesystem(fs)
            files = [fs.unstrip_protocol(f) for f in files]
        names = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(f"CREATE OR REPLACE TEMP VIEW search_index AS SELECT * FROM read_parquet([{names}])")
        # BM25 (k1 = 1.2, b = 0.75) over the lines the views show; then a line holding the whole
        # query as a phrase (spaces and punctuation aside) ranks above one with the words apart.
        hits = con.sql(
            """
            WITH live AS (
                SELECT i.* FROM search_index i
                JOIN elements e USING (page_id, engine, run_id, batch_id, reading_order)
                WHERE e.level = 'line' AND ($engine IS NULL OR i.engine = $engine)
            ),
            stats AS (SELECT count(*) AS n, avg(line_len) AS avg_len
                      FROM (SELECT DISTINCT page_id, engine, run_id, batch_id, reading_order, line_len FROM live)),
            df AS (SELECT token, count(*) AS df FROM live WHERE list_contains($toks, token) GROUP BY token),
            hits AS (
                SELECT l.page_id, l.engine, l.run_id, l.batch_id, l.reading_order,
                       sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
                           * l.tf * 2.2 / (l.tf + 1.2 * (0.25 + 0.75 * l.line_len / s.avg_len))) AS bm25,
                       count(*) AS matched
                FROM live l JOIN df USING (token) CROSS JOIN stats s
                GROUP BY ALL
                ORDER BY bm25 DESC
                LIMIT $pool
            )
            SELECT h.page_id, h.engine, h.bm25, h.matched, h.reading_order, e.text, e.x0, e.y0, e.x1, e.y1,
                   e.confidence, p.image_uri
            FROM hits h
            JOIN elements e USING (page_id, engine, run_id, batch_id, reading_order)
            JOIN pages p USING (page_id, engine, run_id, batch_id)
            WHERE e.level = 'line'
            """,
            params={"toks": toks, "engine": engine, "pool": max(200, 20 * limit)},
        ).pl()
        if hits.is_empty():
            return hits
        phrase = normalize(q)
        bonus = pl.Series([1.0 if phrase and phrase in normalize(t) else 0.0 for t in hits["text"]])
        return (hits.with_columns((pl.col("bm25") + bonus).round(3).alias("score"))
                .sort(["score", "page_id", "reading_order"], descending=[True, False, False])
                .select("page_id", "engine", "score", "matched", "text", "x0", "y0", "x1", "y1", "confidence",
                        "image_uri")
                .head(limit))
    finally:
        con.close()
