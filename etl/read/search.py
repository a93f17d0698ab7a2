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
from dataclasses import dataclass, field
from typing import Callable

import duckdb
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
    dropped: int  # index files of shards that are gone (or damaged)
    files: list[str] = field(default_factory=list)  # the sound index files, as the index's filesystem names them
    memory: list[pa.Table] = field(default_factory=list)  # index tables that could not be saved (a read-only dataset)


def refresh_index(out: str, on_warning: Callable[[str], None] | None = None) -> Refresh:
    """Bring the index of dataset `out` up to date with its elements shards.

    An index file that cannot be read (truncated, damaged) is built again from its shard. Where the
    index cannot be written (a read-only dataset, a bucket without write access), what it lacks is
    built in memory for this search (`Refresh.memory`) and the dataset is left as it is."""
    warn = on_warning or (lambda _: None)
    root = storage.join(out, "elements")
    fs, shards = storage.glob_parquet(root)
    base = storage.url_to_fs(root)[1].rstrip("/")
    index_root = storage.join(out, INDEX_DIR)
    ifs, ibase = storage.url_to_fs(index_root)
    ibase = ibase.rstrip("/")
    _, sound, damaged = storage.sound_parquet(index_root)
    for path, why in damaged.items():
        warn(f"search index file damaged, built again from its shard: {path} ({why})")
    existing = set(sound)
    refresh = Refresh(0, 0, 0)
    wanted: set[str] = set()
    unsaved = None  # why the index cannot be written, once known
    for shard in shards:
        target = ibase + shard[len(base):]
        wanted.add(target)
        if target in existing and _modified(ifs, target) >= _modified(fs, shard):
            refresh.kept += 1
            refresh.files.append(target)
            continue
        try:
            with fs.open(shard, "rb") as f:
                table = _index_table(pq.read_table(f, columns=["text", "page_id", "engine", "run_id", "batch_id",
                                                               "reading_order", "level"]))
        except Exception as exc:  # a damaged or vanished shard (the views leave it out too): the rest is indexed
            warn(f"shard not indexed: {shard} ({type(exc).__name__}: {exc})")
            continue
        refresh.indexed += 1
        if unsaved is None:
            try:
                storage.write_parquet_atomic(table, ifs.unstrip_protocol(target) if _remote(ifs) else target)
                refresh.files.append(target)
                continue
            except Exception as exc:  # read-only, no write access, full: search still works, from memory
                unsaved = f"{type(exc).__name__}: {exc}"
                warn(f"the search index cannot be saved under {index_root} ({unsaved}): "
                     "this search indexes the shards it lacks in memory")
        refresh.memory.append(table)
    for path in (existing | set(damaged)) - wanted:  # index files of shards that are gone
        try:
            ifs.rm_file(path)
            refresh.dropped += 1
        except FileNotFoundError:  # another search dropped it first
            pass
        except Exception:  # read-only: the views never show their rows (search joins on `elements`)
            pass
    return refresh


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

    toks = sorted(set(tokens(q)))
    if not toks:
        raise UsageError(f"q={q!r}: nothing to search for (no words or characters)")
    for attempt in range(LIST_AGAIN):
        index = refresh_index(out, on_warning) if refresh else _index_as_is(out, on_warning)
        if not index.files and not index.memory:
            return pl.DataFrame()
        try:
            hits = _ranked(out, index, toks, engine, limit, on_warning)
            break
        except duckdb.IOException:
            # Another process removed or replaced a shard or an index file between this search's
            # listing and its reading (a concurrent search dropping the index of removed shards,
            # a rerun setting a damaged shard aside): list again.
            if attempt == LIST_AGAIN - 1:
                raise
    if hits.is_empty():
        return hits
    phrase = normalize(q)
    bonus = pl.Series([1.0 if phrase and phrase in normalize(t) else 0.0 for t in hits["text"]])
    return (hits.with_columns((pl.col("bm25") + bonus).round(3).alias("score"))
            .sort(["score", "page_id", "reading_order"], descending=[True, False, False])
            .select("page_id", "engine", "score", "matched", "text", "x0", "y0", "x1", "y1", "confidence",
                    "image_uri")
            .head(limit))


LIST_AGAIN = 3  # listings a search makes when files vanish under it


def _index_as_is(out: str, on_warning: Callable[[str], None] | None) -> Refresh:
    """The stored index without refreshing it: damaged files left out."""
    _, sound, damaged = storage.sound_parquet(storage.join(out, INDEX_DIR))
    for path, why in damaged.items():
        (on_warning or (lambda _: None))(f"search index file damaged, left out: {path} ({why})")
    return Refresh(0, len(sound), 0, files=sound)


def _ranked(out: str, index: Refresh, toks: list[str], engine: str | None, limit: int, on_warning):
    """The candidate lines, by BM25, with their text, box and page."""
    from etl.dataset.views import connect

    con = connect(out, on_warning=on_warning)
    try:
        _index_view(con, out, index)
        # BM25 (k1 = 1.2, b = 0.75) over the lines the views show; then a line holding the whole
        # query as a phrase (spaces and punctuation aside) ranks above one with the words apart.
        return con.sql(
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
    finally:
        con.close()


def _index_view(con, out: str, index: Refresh) -> None:
    """`search_index`: the saved index files and what was indexed in memory, as one view."""
    parts = []
    if index.files:
        fs, _ = storage.url_to_fs(out)
        files = index.files
        if _remote(fs):
            if not con.filesystem_is_registered(fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol):
                con.register_filesystem(fs)
            files = [fs.unstrip_protocol(f) for f in files]
        names = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        parts.append(f"SELECT * FROM read_parquet([{names}])")
    if index.memory:
        con.register("_search_memory", pa.concat_tables(index.memory))
        parts.append("SELECT * FROM _search_memory")
    con.execute("CREATE OR REPLACE TEMP VIEW search_index AS " + " UNION ALL ".join(parts))
