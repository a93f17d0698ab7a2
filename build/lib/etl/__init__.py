"""comic-ocr-etl: manifest -> Lithops batches -> Parquet shards -> DuckDB.

The Python API mirrors the CLI (`just ocr`, `just query`, `just manifest`)::

    from etl import run_ocr, query, build_manifest
    summary = run_ocr("examples/manifest.csv", engine="tesseract", out="out")
    print(query("out", "select * from page_text"))
"""

__all__ = ["build_manifest", "connect", "query", "run_ocr"]


def __getattr__(name: str):
    # Lazy: workers import etl.worker/etl.schema without pulling in DuckDB or Lithops.
    if name in __all__:
        from etl import api

        return getattr(api, name)
    raise AttributeError(name)
