"""comic-ocr-etl: manifest -> Lithops batches -> Parquet shards -> DuckDB.

The Python API mirrors the CLI (`just ocr`, `just query`, `just manifest`)::

    from etl import run_ocr, query, build_manifest
    summary = run_ocr("examples/manifest.csv", engine="tesseract", out="out")
    print(query("out", "select * from page_text"))
"""

import importlib

# Each name from its home, imported on first use: workers import etl.run.worker and
# etl.dataset.schema without pulling in DuckDB or Lithops.
_HOMES = {"run_ocr": "etl.run.job", "query": "etl.dataset.views", "connect": "etl.dataset.views",
          "build_manifest": "etl.dataset.manifest"}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
