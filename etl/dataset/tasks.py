"""What crosses the Lithops hop: the task of one call (a batch of pages) and its result.

The client (etl.run.job) makes a `BatchTask` per batch; the worker (etl.run.worker.process_batch) reads
its pages and returns a `BatchResult`, which the client checks, accounts and hands to the
`on_batch` callback. Both are plain dataclasses of plain values: Lithops pickles them to any
backend, and `BatchTask.of` also takes the same fields as a dict (JSON, a test's literal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PageTask:
    page_id: str
    image_uri: str
    extra: dict = field(default_factory=dict)  # the manifest's other columns, kept in the page row
    lines: list[dict] | None = None  # a cascade stage: the lines to re-read (etl.cascade.run)


@dataclass(frozen=True)
class BatchTask:
    engine: str
    options: dict  # the engine's options, as `Engine.parse_options` takes them
    out: str  # the dataset (a folder or URI)
    run_id: str
    batch_id: str
    config_hash: str
    pages: tuple[PageTask, ...]
    extra_columns: tuple[str, ...] = ()
    page_timeout: float | None = None  # seconds a page may take (read, decode, engine)
    max_pixels: int | None = None
    max_bytes: int | None = None
    pdf_dpi: float | None = None  # a PDF page that is not one image is rendered at this (None: its images')
    price: dict | None = None  # USD per million prompt/completion tokens (API engines)
    client: dict | None = None  # who started the run, where a local worker can check it is alive
    checkpoint: int | None = None  # pages between two writes of the shards
    reread_of: str | None = None  # a cascade stage: the reading whose lines it re-reads
    budget_usd: float | None = None  # what the call may spend on API requests
    call_timeout: float | None = None  # seconds Lithops gives the call (how long its lease may last)

    @classmethod
    def of(cls, value: BatchTask | dict[str, Any]) -> BatchTask:
        if isinstance(value, cls):
            return value
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise TypeError(f"not fields of a batch task: {', '.join(unknown)}")
        pages = tuple(p if isinstance(p, PageTask) else PageTask(**p) for p in value["pages"])
        return cls(**{**value, "pages": pages, "extra_columns": tuple(value.get("extra_columns") or ())})

    def with_pages(self, pages) -> BatchTask:
        return dataclasses.replace(self, pages=tuple(pages))

    def page_ids(self) -> list[str]:
        return [str(p.page_id) for p in self.pages]


@dataclass
class BatchResult:
    batch_id: str
    run_id: str  # the client checks that a result is this run's and this batch's
    engine_version: str | None
    pages: list[dict]  # one summary per page of the batch (etl.dataset.layout.PAGE_SUMMARY_KEYS)
    load_s: float = 0.0  # engine start-up
    elapsed_s: float = 0.0
    peak_rss_mb: float | None = None
    abandoned: bool = False  # the worker stopped: its client is gone
    write_error: str | None = None  # the output refused the shards for good (full, read-only)
