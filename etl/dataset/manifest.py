"""Manifests: load (CSV, Parquet, JSONL) into Polars, check, and build from a folder.

A manifest has one row per page: `page_id` and `image_uri` (older names
`canonical_id` and `absolute_image_path` are accepted). Other columns are kept
and carried into the page table. Relative image paths are resolved against the
manifest's own folder, so a manifest can travel with its images.
"""

from __future__ import annotations

import io
import os
import posixpath
from pathlib import PurePosixPath

import polars as pl

from fsspec.implementations.local import LocalFileSystem

from etl.dataset import containers, storage
from etl.errors import ManifestError
from etl.dataset.schema import ID, RESERVED, URI, extra_name

ALIASES = {ID: ("canonical_id",), URI: ("absolute_image_path", "image_path")}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".gif", ".bmp", ".jp2"}
SHOW = 5  # how many offending values/rows an error message lists


def _read(uri: str) -> pl.LazyFrame:
    ext = PurePosixPath(uri.split("?", 1)[0]).suffix.lower()
    fs, path = storage.url_to_fs(uri)
    if not fs.exists(path):
        raise ManifestError(f"{uri}: manifest not found")
    if fs.isdir(path):
        raise ManifestError(f"{uri}: is a folder: read it with `just ocr src={uri}`, or build a manifest from it "
                            f"with `just manifest src={uri} out=FILE`")
    if ext not in (".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson", ".json"):
        raise ManifestError(f"{uri}: unsupported manifest format {ext or '(no extension)'}; use .csv, .parquet or .jsonl")
    # Local files are scanned by Polars itself (parallel, memory-mapped); remote ones are fetched first.
    source = path if isinstance(fs, LocalFileSystem) else io.BytesIO(fs.cat_file(path))
    try:
        if ext in (".csv", ".tsv", ".txt"):
            # Everything as text: ids like "007" must stay ids, not numbers.
            lf = pl.scan_csv(source, infer_schema=False, separator="\t" if ext == ".tsv" else ",")
        elif ext == ".parquet":
            lf = pl.scan_parquet(source)
        else:
            lf = pl.scan_ndjson(source)
        lf.collect_schema()
        return lf
    except pl.exceptions.NoDataError:
        raise ManifestError(f"{uri}: the file is empty (no header, no rows)") from None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise ManifestError(f"{uri}: cannot be read as {ext[1:].upper()}: {exc}") from None


def _rows(df: pl.DataFrame, mask: pl.Expr) -> list[int]:
    """1-based data-row numbers where mask holds (first few)."""
    return df.with_row_index("_row", offset=1).filter(mask)["_row"].head(SHOW).to_list()


def _fmt_rows(rows: list[int], total: int) -> str:
    more = f" and {total - len(rows)} more" if total > len(rows) else ""
    return ", ".join(map(str, rows)) + more


def load_manifest(uri: str, warnings: list[str] | None = None) -> pl.DataFrame:
    """Read and check a manifest; return columns page_id, image_uri, then extras.

    Raises ManifestError naming the file, column and rows for: a missing
    column, no rows, null/empty ids or URIs, duplicate ids. URIs with an
    unsupported scheme are not fatal (see `uri_warnings`): those pages get
    error rows and the rest of the run goes on; with `warnings`, that warning is added to it.
    """
    return check_manifest(_read(uri), uri, warnings)


def check_manifest(lf: pl.LazyFrame, uri: str, warnings: list[str] | None = None) -> pl.DataFrame:
    """`load_manifest`'s checks on a frame from anywhere (a file, a query); `uri` names it in
    errors and is where relative image paths are resolved from."""
    columns = lf.collect_schema().names()
    for col, aliases in ALIASES.items():
        if col not in columns:
            found = next((a for a in aliases if a in columns), None)
            if found is None:
                raise ManifestError(
                    f"{uri}: no '{col}' column (also accepted: {', '.join(repr(a) for a in aliases)}); "
                    f"columns found: {', '.join(columns) or 'none'}"
                )
            lf = lf.rename({found: col})
            columns = [col if c == found else c for c in columns]
    extras = [c for c in columns if c not in (ID, URI) and c not in RESERVED]
    renamed = {c: extra_name(c) for c in extras if extra_name(c) != c and extra_name(c) not in columns}
    if renamed and warnings is not None:
        warnings.append(f"{uri}: manifest column(s) {', '.join(repr(c) for c in renamed)} kept as "
                        f"{', '.join(repr(n) for n in renamed.values())}: the views use those names themselves")
    extras = [c for c in extras if extra_name(c) == c or c in renamed]
    try:
        df = lf.select(pl.col(ID).cast(pl.String), pl.col(URI).cast(pl.String).str.strip_chars(),
                       *[pl.col(c).alias(renamed.get(c, c)) for c in extras]).collect()
    except pl.exceptions.NoDataError:
        raise ManifestError(f"{uri}: the file is empty (no header, no rows)") from None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise ManifestError(f"{uri}: cannot be read: {exc}") from None
    if df.height == 0:
        raise ManifestError(f"{uri}: no rows (only a header?)")
    empty = {col: pl.col(col).is_null() | (pl.col(col).str.len_bytes() == 0) for col in (ID, URI)}
    # One pass for every count (the expressions run side by side), the ids' hashes among them.
    first = df[URI][0]
    stats = df.select(
        *[e.sum().alias(col) for col, e in empty.items()], _same_scheme_as(first).all().alias("uniform"),
        pl.col(ID).hash().implode().alias("hashes"),
    )
    counts = stats.drop("hashes").row(0, named=True)
    for col in (ID, URI):
        n = counts[col]
        if n:
            raise ManifestError(
                f"{uri}: column '{col}' is null or empty in {n} row(s): data rows {_fmt_rows(_rows(df, empty[col]), n)}"
            )
    if not _distinct(stats["hashes"][0]):
        _check_duplicates(df, uri)
    uniform = storage.scheme_of(first) if counts["uniform"] else None
    if warnings is not None and (w := uri_warnings(df, uri, uniform)):
        warnings.append(w)
    return df if uniform is not None and uniform not in containers.PROTOCOLS else _resolve(uri, df)


def _scheme(col: pl.Expr) -> pl.Expr:
    """What precedes the first "://", lowercased (as storage.scheme_of reads it); null for a path."""
    return col.str.head(col.str.find("://", literal=True)).str.to_lowercase()


def _uniform_scheme(df: pl.DataFrame) -> str | None:
    """The one scheme of every URI ("" for absolute local paths), or None when they differ.

    One prefix test per row answers it for the usual manifest (all `s3://bucket/...` or all
    `/data/...`); per-row scheme parsing, several times slower, is left to mixed manifests.
    """
    first = df[URI][0]
    return storage.scheme_of(first) if df.select(_same_scheme_as(first).all()).item() else None


def _same_scheme_as(first: str) -> pl.Expr:
    """True where a URI has the scheme of `first` (for a local path: is an absolute local path)."""
    col, scheme = pl.col(URI), storage.scheme_of(first)
    if scheme:
        return col.str.starts_with(first[: len(scheme) + 3])
    return col.str.starts_with("/") & ~col.str.contains("://", literal=True)


_UNKNOWN = object()


def uri_warnings(df: pl.DataFrame, uri: str, uniform: str | None | object = _UNKNOWN) -> str | None:
    """A message naming the rows whose image URI scheme no reader supports, or None. `uniform`:
    the one scheme of every URI, or None when they differ, where the caller knows it."""
    if uniform is _UNKNOWN:
        uniform = _uniform_scheme(df) if df.height else ""
    if uniform is not None:
        schemes = [uniform]
    else:  # a handful of schemes: check those, and find the rows only when one is bad
        schemes = df.select(_scheme(pl.col(URI)).unique()).to_series().drop_nulls().to_list()
    unsupported = sorted(set(schemes) - storage.SUPPORTED_SCHEMES)
    if not unsupported:
        return None
    bad = _scheme(pl.col(URI)).is_in(unsupported).fill_null(False)
    n_bad = df.select(bad.sum()).item()
    sample = df.filter(bad)[URI].head(SHOW).to_list()
    return (
        f"{uri}: column '{URI}' has an unsupported URI scheme in {n_bad} row(s): data rows "
        f"{_fmt_rows(_rows(df, bad), n_bad)} (e.g. {sample[0]!r}); those pages get error rows "
        "(unsupported_uri). Supported: local paths, "
        + ", ".join(f"{s}://" for s in sorted(storage.SUPPORTED_SCHEMES) if s)
    )


def _distinct(hashes) -> bool:
    """True when no two hashes are equal, which proves the ids unique (equal ids hash alike); only
    then is the exact, slower duplicate check skipped. NumPy's sort of the 64-bit hashes is several
    times faster than a hash table of them (n_unique)."""
    import numpy as np

    ordered = np.sort(hashes.to_numpy())
    return not bool((ordered[1:] == ordered[:-1]).any())


def _check_duplicates(df: pl.DataFrame, uri: str) -> None:
    dup = pl.col(ID).is_duplicated()
    n_dup = df.select(dup.sum()).item()
    if not n_dup:
        return
    examples = (
        df.with_row_index("_row", offset=1)
        .filter(dup)
        .group_by(ID, maintain_order=True)
        .agg(pl.col("_row"))
        .head(SHOW)
    )
    shown = "; ".join(f"{r[ID]!r} (rows {', '.join(map(str, r['_row'][:SHOW]))})" for r in examples.iter_rows(named=True))
    n_ids = df.filter(dup)[ID].n_unique()
    raise ManifestError(f"{uri}: column '{ID}' has {n_ids} duplicated id(s) over {n_dup} rows, e.g. {shown}")


# A page inside a container whose own path is relative: `zip://p1.png::vol01.cbz`.
_RELATIVE_CONTAINER = rf"^(?:{'|'.join(sorted(containers.PROTOCOLS))})://[^:]*::[^/][^:]*$"


def _resolve(manifest_uri: str, df: pl.DataFrame) -> pl.DataFrame:
    """Relative local paths are relative to the manifest's folder (a manifest of mixed URIs), and so
    are the relative container paths of pages inside archives and PDFs."""
    col = pl.col(URI)
    relative = ~col.str.contains("://", literal=True) & ~col.str.starts_with("/") & (col.str.len_bytes() > 0)
    inside = col.str.contains(_RELATIVE_CONTAINER)
    if not df.select((relative | inside).any()).item():  # object-store URIs: nothing to join
        return df
    if storage.scheme_of(manifest_uri):
        base = posixpath.dirname(manifest_uri)
    else:
        base = os.path.dirname(os.path.abspath(manifest_uri))
    return df.with_columns(pl.when(relative).then(pl.lit(base + "/") + col)
                           .when(inside).then(col.str.replace("::", "::" + base.replace("$", "$$") + "/", literal=False))
                           .otherwise(col).alias(URI))


def build_manifest(src: str, out: str | None = None, warnings: list[str] | None = None) -> pl.DataFrame:
    """The pages of `src` (page images, comic archives, PDFs, EPUBs, or a folder or prefix of them:
    etl.dataset.sources) as a manifest, written to `out` (.csv, .parquet, .jsonl) when given. What
    cannot be a page is named in `warnings` (a run from `src=` gives those error rows)."""
    from etl.dataset.sources import scan

    found = scan(src)
    for problem in found.problems:
        if warnings is not None:
            warnings.append(f"{problem.row[ID]}: {problem.kind}: {problem.error}")
    if not found.pages.height:
        raise ManifestError(f"src={src}: no readable page")
    if out:
        write_frame(found.pages, out)
    return found.pages


def write_frame(df: pl.DataFrame, out: str) -> None:
    ext = PurePosixPath(out).suffix.lower()
    fs, path = storage.url_to_fs(out)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as f:
        if ext == ".parquet":
            df.write_parquet(f)
        elif ext in (".jsonl", ".ndjson"):
            df.write_ndjson(f)
        elif ext == ".csv":
            df.write_csv(f)
        else:
            raise ManifestError(f"{out}: unsupported manifest format {ext}; use .csv, .parquet or .jsonl")


def pages_from(dataset: str, where: str | None = None, warnings: list[str] | None = None) -> pl.DataFrame:
    """A manifest chosen by SQL: the pages of an existing dataset matching `where`, a condition
    over its `pages` view (one row per page, engine and options), e.g.
    `engine = 'tesseract' and (status = 'error' or mean_confidence < 0.8)`.
    Checked like any manifest; ManifestError when nothing matches or the SQL is wrong."""
    import duckdb

    from etl.dataset import storage
    from etl.dataset.views import condition, connect

    fs, path = storage.url_to_fs(dataset)
    if not fs.exists(path):
        raise ManifestError(f"from={dataset}: no dataset there")
    chosen = condition(where or "true")
    con = connect(dataset, on_warning=lambda w: None)
    try:
        df = con.sql(f"select page_id, any_value(image_uri) as image_uri from pages where ({chosen}) "
                     "group by page_id order by page_id").pl()
    except duckdb.Error as exc:
        raise ManifestError(f"where={where!r} over the pages of {dataset}: {exc}") from None
    finally:
        con.close()
    if df.height == 0:
        raise ManifestError(f"from={dataset} where={where!r}: no page matches")
    return check_manifest(df.lazy(), f"{dataset} (where {where or 'true'})", warnings)
