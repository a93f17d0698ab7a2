"""The dataset's schema, defined once: engine elements, page rows, element rows.

Layout of a dataset folder (local path or fsspec URI)::

    OUT/pages/engine=NAME/part-<batch_id>.parquet      one row per page processed
    OUT/elements/engine=NAME/part-<batch_id>.parquet   one row per text element

Every run and engine adds shards; the DuckDB views in `sql/` pick, for each page
and engine, the latest successful row (else the latest error).
"""

from __future__ import annotations

import json

import pyarrow as pa

from engines.contract import Element, PageResult  # noqa: F401  (the rows are made from them)

LEVELS = ("word", "line", "block", "furigana")  # furigana: a reading printed beside a column, not in the text
STATUS_OK = "ok"
STATUS_ERROR = "error"
# Not read yet, on purpose: the run's budget (max_cost_usd) was spent first. Resume reads it.
STATUS_PENDING = "pending"


PAGE_COLUMNS = [
    ("page_id", pa.string()),
    ("image_uri", pa.string()),
    ("engine", pa.string()),
    ("engine_version", pa.string()),
    ("config_hash", pa.string()),
    ("run_id", pa.string()),
    ("batch_id", pa.string()),
    ("status", pa.string()),  # ok | error | pending
    ("error_kind", pa.string()),
    ("error", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("text", pa.string()),
    ("n_elements", pa.int32()),
    ("mean_confidence", pa.float32()),
    ("duration_ms", pa.float32()),
    ("processed_at", pa.timestamp("ms", tz="UTC")),
    # API engines only (null for local ones): tokens, estimated cost, image size sent.
    ("prompt_tokens", pa.int32()),
    ("completion_tokens", pa.int32()),
    ("cost_usd", pa.float64()),
    ("sent_width", pa.int32()),
    ("sent_height", pa.int32()),
    # Cascade stages: the rows re-read some lines of another reading ("ENGINE:CONFIG_HASH"), not the
    # page; their line elements carry the reading_order of the line they re-read (views: best_lines).
    ("reread_of", pa.string()),
    ("lines_reread", pa.int32()),
]
PAGE_SCHEMA = pa.schema(PAGE_COLUMNS)

ELEMENT_SCHEMA = pa.schema(
    [
        ("page_id", pa.string()),
        ("engine", pa.string()),
        ("config_hash", pa.string()),
        ("run_id", pa.string()),
        ("batch_id", pa.string()),
        ("level", pa.string()),  # word | line | block
        ("text", pa.string()),
        ("confidence", pa.float32()),
        ("x0", pa.float32()),
        ("y0", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("polygon", pa.list_(pa.list_(pa.float32(), 2))),
        ("reading_order", pa.int32()),
        ("block_id", pa.int32()),
        ("line_id", pa.int32()),
        ("vertical", pa.bool_()),
    ]
)

# A manifest's two required columns (every other column is carried as an extra).
ID, URI = "page_id", "image_uri"

# Page vectors: OUT/embeddings/model=NAME/*.parquet, the `embeddings` view (etl.read.embed fills it).
EMBEDDINGS_DIR = "embeddings"
EMBEDDING_SCHEMA = pa.schema([("page_id", pa.string()), ("engine", pa.string()), ("config_hash", pa.string()),
                              ("model", pa.string()), ("vector", pa.list_(pa.float32()))])

# Columns the pipeline owns: a manifest column with one of these names is not
# carried over as an extra column (it would shadow ours).
RESERVED = {name for name, _ in PAGE_COLUMNS}
# Names the views in sql/ compute beside the page columns (a test keeps this list whole), and any
# name starting with "_" (the views' own working columns): a manifest column named so is kept
# under `manifest_<name>`, since the views' `SELECT *` would otherwise give two columns one name
# (a `_rank` column once emptied `pages` and `best_text`).
VIEW_COLUMNS = {"_rank", "at", "base_confidence", "confidence", "base_config_hash", "base_engine", "base_text", "engines",
                "line_no", "n_lines", "reread"}
EXTRA_PREFIX = "manifest_"


def extra_name(column: str) -> str:
    """The name a manifest's extra column is kept under in the dataset."""
    return EXTRA_PREFIX + column if column.startswith("_") or column in VIEW_COLUMNS else column


def page_table(rows: list[dict], extra_columns: list[str]) -> pa.Table:
    """Page rows (dicts) -> Arrow table: our columns typed, extras by `extra_array`."""
    arrays = [pa.array([r.get(n) for r in rows], type=t) for n, t in PAGE_COLUMNS]
    names = [n for n, _ in PAGE_COLUMNS]
    for col in extra_columns:
        arrays.append(extra_array([r.get("extra", {}).get(col) for r in rows]))
        names.append(col)
    return pa.Table.from_arrays(arrays, names=names)


def extra_array(values: list) -> pa.Array:
    """A manifest's own column, as stored in page rows. Numbers, booleans and strings keep their
    type: DuckDB unites those across shards (an int column that turns to text in a later run reads
    as text). Anything else (dates, lists, structs, mixed values) is stored as text, dates in ISO
    form and the rest as JSON, since a date in one run's shards and a number or list in another's
    would make every `select *` on `pages` fail."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = None
    if arr is not None and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type)
                            or pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or pa.types.is_null(arr.type)):
        return arr
    return pa.array([None if v is None else _as_text(v) for v in values], type=pa.string())


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return json.dumps(value, default=str, ensure_ascii=False)


def element_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ELEMENT_SCHEMA)
