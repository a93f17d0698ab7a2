"""Running a job: `run_ocr` reads a manifest's pages (or pages chosen by SQL) into a dataset through
Lithops, resumes what is done, and accounts every page; `RunSummary` is what it returns."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from collections.abc import Sequence
from typing import Any, Callable

import polars as pl

from engines.base import DEFAULT_ENGINE
from engines.redact import error_text
from etl.run import plan
from etl.dataset import storage
from etl.cost.prices import engine_seconds, model_price, tokens_usd
from etl.run.options import RunOptions
from etl.errors import ConfigError
from etl.dataset.manifest import check_manifest, load_manifest, pages_from
from etl.dataset.schema import STATUS_ERROR, STATUS_OK, STATUS_PENDING
from etl.dataset.tasks import BatchResult, BatchTask, PageTask
from etl.dataset.layout import (checkpointed, client_rows_name, done_page_ids, page_row, set_aside_damaged,
                                write_page_rows)
from etl.run.worker import client_identity, process_batch

__all__ = ["RunSummary", "run_ocr"]


@dataclass
class RunSummary:
    run_id: str
    out: str
    engine: str
    engine_version: str | None = None
    config_hash: str = ""
    pages_total: int = 0  # pages in the manifest (after limit)
    skipped: int = 0  # already done by an earlier run
    ok: int = 0
    failed: int = 0
    error_kinds: Counter = field(default_factory=Counter)
    failed_batches: int = 0
    batches: int = 0
    batch_size: int = 0
    workers: int = 0
    backend: str = "localhost"
    elapsed_s: float = 0.0
    max_peak_rss_mb: float | None = None
    examples: list[dict] = field(default_factory=list)  # a few failed pages with reasons
    warnings: list[str] = field(default_factory=list)
    unrecorded: int = 0  # failed pages whose error rows could not be written (storage down)
    page_seconds: float = 0.0  # sum of per-page durations measured by the workers
    prompt_tokens: int = 0  # API engines
    completion_tokens: int = 0
    cost_usd: float | None = None  # estimated from costs.yaml's model prices
    calls_retried: int = 0  # failed call attempts that Lithops ran again
    pending: int = 0  # left unread on purpose: the budget (max_cost_usd) was spent
    budget_usd: float | None = None
    reread_of: str | None = None  # a cascade stage: the reading ("ENGINE:CONFIG_HASH") whose lines it re-read
    lines: int = 0  # a cascade stage: lines sent to the engine
    volumes: int = 0  # src=: the archives, PDFs, EPUBs and image folders the pages came from

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    @property
    def pages_per_s(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def all_ok(self) -> bool:
        return self.failed == 0


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def run_ocr(
    manifest: str | pl.DataFrame | None = None,
    engine: str = DEFAULT_ENGINE,
    out: str | None = None,
    *,
    run: RunOptions | None = None,
    reread: Reread | None = None,
    on_start: Callable[[RunSummary], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    **options: Any,
) -> RunSummary:
    """OCR every page of `manifest` (a file, or a Polars frame of page_id, image_uri) not yet done
    into the dataset at `out` (default: out).

    `options` are run options (`etl.run.options.RunOptions`: batch, workers, limit, force, ...;
    or `run`, already parsed) and the engine's options (every other keyword). Or the pages chosen
    by SQL: `from_` a dataset, `where` a condition over its `pages` view; `out` is then that
    dataset unless given. `max_cost_usd` caps an API engine's spend: pages past it become
    `pending` rows that a rerun reads. `reread` (a cascade stage, etl.cascade.run) re-reads only
    the chosen lines of another reading.

    Raises UsageError (ManifestError, ConfigError) before any work when the
    manifest, the options or the environment are unusable. Failed pages do not
    raise: they are error rows, counted in the summary.
    """
    from engines import get_engine
    from etl.run.executor import LithopsExecutor, backend_of, check_local_workdir, load_config, workers_of

    t0 = time.perf_counter()
    if run is None:
        run, engine_options = RunOptions.split(options)
    else:
        engine_options = options
    if run.cascade or run.when or run.pages_when:
        raise ConfigError("cascade=, when= and pages_when= make a cascade: etl.cascade.run.run_cascade (just ocr cascade=A,B)")
    from_, where, batch, workers, backend, config = run.from_, run.where, run.batch, run.workers, run.backend, run.config
    limit, force, retries, page_timeout, call_timeout = run.limit, run.force, run.retries, run.page_timeout, run.call_timeout
    max_pixels, max_bytes, checkpoint, max_cost_usd = run.max_pixels, run.max_bytes, run.checkpoint, run.max_cost_usd
    pdf_dpi = run.pdf_dpi
    cls = get_engine(engine)
    options = cls.parse_options(engine_options)
    lconfig = load_config(config, backend, workers)
    be = backend_of(lconfig)
    if be == "localhost":
        cls.check(options)  # on a cloud backend the runtime image is what matters
        if why := check_local_workdir():
            raise ConfigError(why)
    if max_cost_usd is not None and model_price(cls.model(options)) is None:
        raise ConfigError(f"max_cost_usd needs an API engine whose model has a price in costs.yaml `models:` "
                          f"({engine} {cls.model(options) or ''} has none)")
    warnings: list[str] = []
    problems = []
    if run.src is not None and (manifest is not None or from_ is not None):
        raise ConfigError("give src= (what you keep comics in), a manifest, or from= a dataset: one of them")
    if reread is not None:
        manifest, from_, where = None, None, None
        df = reread.frame
    elif run.src is not None:
        from etl.dataset.sources import scan

        found = scan(run.src)
        problems = found.problems
        manifest = run.src
        df = check_manifest(found.pages.lazy(), run.src, warnings) if found.pages.height else found.pages
    elif (manifest is None) == (from_ is None):
        raise ConfigError("give src= (page images, archives, PDFs, EPUBs or a folder of them), a manifest, or "
                          "from_= a dataset (with where= a condition over its pages)")
    if where is not None and from_ is None:
        raise ConfigError("where= chooses pages of a dataset: give from_= (from= on the command line) too")
    out = out or from_ or "out"
    if reread is None and run.src is None:  # (src= was scanned above)
        if isinstance(manifest, pl.DataFrame):  # pages already loaded (a cascade's stages)
            df, manifest = check_manifest(manifest.lazy(), "the given pages", warnings), f"{manifest.height} given pages"
        else:
            df = load_manifest(manifest, warnings) if manifest is not None else pages_from(from_, where, warnings)
    manifest = manifest or (f"{from_} where {where or 'true'}" if from_ else f"lines of {reread.of}")
    if limit is not None:
        df = df.head(limit)
    for w in warnings:
        if on_warning:
            on_warning(w)
    if why := storage.check_writable(out):  # found now, not after all the OCR
        raise ConfigError(f"cannot write the dataset at out={out}: {why}")
    cfg_hash = plan.config_hash(engine, options, reread and {"of": reread.of, "when": reread.when})
    # Resume and the views read every shard: one damaged file must stop neither.
    for w in set_aside_damaged(out, engine):
        warnings.append(w)
        if on_warning:
            on_warning(w)
    summary = RunSummary(run_id=new_run_id(), out=out, engine=engine, config_hash=cfg_hash,
                         pages_total=df.height + len(problems), backend=be, workers=workers_of(lconfig),
                         warnings=warnings, budget_usd=max_cost_usd, reread_of=reread and reread.of)
    if "container" in df.columns or problems:
        summary.volumes = len(set(df["container"].to_list() if "container" in df.columns else [])
                              | {p.row.get("container") for p in problems})
    if cls.model(options) is not None:  # an earlier run's paid requests still in flight: wait, never pay twice
        from etl.run import leases

        leases.await_others(out, engine, summary.run_id, set(df[plan.ID].to_list()), on_warning,
                            longest_s=call_limit(call_timeout, page_timeout, batch or cls.max_batch_size))
    todo = df if force else plan.pending(df, done_page_ids(out, engine, cfg_hash))
    summary.skipped = df.height - todo.height
    size = batch or plan.planned_batch_size(cls, options, todo.height, summary.workers, be)
    batches = plan.make_batches(todo, size, engine, cfg_hash)
    summary.batch_size, summary.batches = size, len(batches)
    if on_start:
        on_start(summary)
    extra_columns = [c for c in df.columns if c not in ("page_id", "image_uri")]
    if problems:  # what src= holds that cannot be a page: error rows, written here, with their reasons
        _record_problems(problems, summary, engine, out, cfg_hash, extra_columns, on_batch)
    if not batches:
        summary.elapsed_s = time.perf_counter() - t0
        return summary

    # Local workers stop when this process is gone (the localhost runner would go on alone).
    client = client_identity() if be == "localhost" else None
    price = model_price(cls.model(options))
    opts = dataclasses.asdict(options)
    def pages_of(b) -> list[PageTask]:
        pages = b.pages()
        if reread is not None:  # a cascade stage: each page with its lines to re-read
            pages = [dataclasses.replace(p, lines=reread.lines[str(p.page_id)]) for p in pages]
        return pages

    timeout = call_limit(call_timeout, page_timeout, size)

    def task_of(b) -> BatchTask:
        return BatchTask(engine=engine, options=opts, out=out, run_id=summary.run_id, batch_id=b.batch_id,
                         config_hash=cfg_hash, pages=tuple(pages_of(b)), extra_columns=tuple(extra_columns),
                         page_timeout=page_timeout, max_pixels=max_pixels, max_bytes=max_bytes, pdf_dpi=pdf_dpi, price=price,
                         client=client, checkpoint=checkpoint or _checkpoint_pages(cls, options),
                         reread_of=reread and reread.of, call_timeout=timeout)

    tasks = plan.costliest_first(TaskList(batches, task_of))
    if reread is not None:
        summary.lines = sum(len(reread.lines[str(p)]) for p in todo[plan.ID])
    executor = LithopsExecutor(lconfig, retries=retries, call_timeout=timeout, preload=cls.preload_modules(options))
    if max_cost_usd is None:
        _run_tasks(executor, tasks, summary, retries, on_batch)
    else:  # in waves, each given what is left of the budget
        spend = Spend(max_cost_usd, most_billed(cls, options, price))
        queue = tasks
        while queue:
            wave, queue = spend.admit(queue, summary.workers)
            if not wave:
                for task in queue:
                    _account(summary, _record_pages(task, STATUS_PENDING, "budget", (
                        f"not read: max_cost_usd={max_cost_usd:g} was spent (${spend.spent:.4f}) or what is "
                        "left pays for no page; rerun with a higher one to read it")))
                break
            results: list[BatchResult] = []
            _run_tasks(executor, wave, summary, retries, on_batch, lambda r: (spend.observe(r), results.append(r)))
            spend.after(results)
    summary.calls_retried = executor.retried
    summary.elapsed_s = time.perf_counter() - t0
    return summary


def _record_problems(problems, summary: RunSummary, engine: str, out: str, cfg_hash: str, extra_columns: list[str],
                     on_batch: Callable[[BatchResult], None] | None) -> None:
    """Error rows for the pages (or containers) of `src=` that cannot be read: each with its kind and reason."""
    frame = pl.DataFrame({plan.ID: [str(p.row[plan.ID]) for p in problems]})
    batch_id = plan.make_batches(frame, len(problems), engine, cfg_hash)[0].batch_id
    task = BatchTask(engine=engine, options={}, out=out, run_id=summary.run_id, batch_id=batch_id,
                     config_hash=cfg_hash, extra_columns=tuple(extra_columns),
                     pages=tuple(PageTask(page_id=str(p.row[plan.ID]), image_uri=str(p.row[plan.URI]),
                                          extra={c: p.row.get(c) for c in extra_columns}) for p in problems))
    now = datetime.now(timezone.utc)
    rows = [page_row(task, page, status=STATUS_ERROR, error_kind=p.kind, error=error_text(p.error), processed_at=now)
            for page, p in zip(task.pages, problems)]
    write_page_rows(out, engine, client_rows_name(task, STATUS_ERROR), rows, extra_columns)
    result = BatchResult(batch_id=batch_id, run_id=summary.run_id, engine_version=None,
                         pages=[{"page_id": r["page_id"], "status": STATUS_ERROR, "error_kind": r["error_kind"],
                                 "error": r["error"]} for r in rows])
    _account(summary, result)
    if on_batch:
        on_batch(result)


def call_limit(call_timeout: float | None, page_timeout: float, size: int) -> float:
    """Seconds a call may take (Lithops kills it after): `call_timeout`, else its pages' time limits
    plus start-up."""
    return call_timeout or page_timeout * size + 300


class TaskList(Sequence):
    """The run's batch tasks, each made when it is sent: a million-page run never holds a million
    page tasks. Slicing gives a view of the same kind (the budget's waves take slices)."""

    def __init__(self, batches, make: Callable[[Any], BatchTask], order: range | list[int] | None = None):
        self.batches, self.make = batches, make
        self.order = range(len(batches)) if order is None else order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return TaskList(self.batches, self.make, self.order[i])
        return self.make(self.batches[self.order[i]])

    def reordered(self, order: list[int]) -> TaskList:
        return TaskList(self.batches, self.make, [self.order[i] for i in order])


@dataclass(frozen=True)
class Reread:
    """A cascade stage's work: which lines of which reading to read again (etl.cascade.run builds it)."""

    of: str  # the reading: "ENGINE:CONFIG_HASH"
    when: str  # the condition that chose the lines (part of the stage's config hash)
    frame: Any  # the pages (page_id, image_uri), a Polars frame
    lines: dict[str, list[dict]]  # page id -> its lines: line_no, x0, y0, x1, y1, polygon, block_id, vertical


class Spend:
    """A run's budget across waves of calls: what is spent, and how much of what is left each call
    of the next wave may spend (etl.run.worker.Allowance keeps to it). A call is given the most its
    pages' requests can be billed (`Engine.usage_bound`), or what is left."""

    def __init__(self, budget: float, need: Callable[[BatchTask], float]):
        self.budget, self.spent, self.need = budget, 0.0, need
        self.stalled = False  # a wave read nothing: what is left pays for no page

    def observe(self, result: BatchResult) -> None:
        for p in result.pages:
            if p.get("cost_usd") is not None:
                self.spent += max(0.0, p["cost_usd"])

    def admit(self, queue, workers: int) -> tuple[list[BatchTask], Any]:
        """(the next wave, the rest); an empty wave when the budget is spent."""
        left = self.budget - self.spent
        if left <= 0 or self.stalled:
            return [], queue
        wave = []
        for task in queue[:max(1, workers)]:
            give = min(self.need(task), left)
            wave.append(dataclasses.replace(task, budget_usd=give))
            left -= give
            if left <= 0:
                break
        return wave, queue[len(wave):]

    def after(self, wave_results: list[BatchResult]) -> None:
        if all(p["status"] == STATUS_PENDING for r in wave_results for p in r.pages):
            self.stalled = True


def most_billed(cls, options, price: dict) -> Callable[[BatchTask], float]:
    """The most a task's requests can be billed: each line's crop (a cascade stage), or each page
    at the largest size the engine sends (the page's size is not known yet)."""
    from engines.base import line_crop_size

    def usd(bound) -> float:
        return tokens_usd(*(bound or (0, 0)), price)

    # The largest page the engine sends: its bound for a page larger than any (the engine scales it down).
    page = usd(cls.usage_bound(options, 10**6, 10**6))

    def need(task: BatchTask) -> float:
        total = 0.0
        for p in task.pages:
            if p.lines is None:
                total += page
            else:
                total += sum(usd(cls.usage_bound(options, *line_crop_size(line), crop=True))
                             for line in p.lines)
        return total

    return need


def _run_tasks(executor, tasks: list[BatchTask], summary: RunSummary, retries: int,
               on_batch: Callable[[BatchResult], None] | None,
               on_result: Callable[[BatchResult], None] | None = None) -> None:
    """Run the calls to the end: every page of every task gets its row (read, failed or pending)."""
    todo_tasks, attempt = tasks, 0
    while todo_tasks:
        lost, seen = [], set()
        for i, result, error in executor.map(process_batch, todo_tasks):
            task = todo_tasks[i]
            seen.add(i)
            if error is None and (problem := _not_result_of(task, result)):
                error = ResultLost(f"the call finished but {problem}")
                if attempt < retries:  # the worker may well have written its shards: the rerun rewrites them
                    lost.append(task)
                    continue
            if error is None and result.write_error:  # disk full, read-only: not retried
                error = OutputUnwritable(result.write_error)
            _finish_batch(summary, task, result, error, retries, on_batch, on_result)
        for i in sorted(set(range(len(todo_tasks))) - seen):  # "all ok" means every page has a row
            _finish_batch(summary, todo_tasks[i], None, ResultLost("Lithops reported nothing for this call"),
                          retries, on_batch, on_result)
        todo_tasks, attempt = lost, attempt + 1


CHECKPOINT_S = 60.0  # a worker writes what it has read about this often: a killed call loses at most that


def _checkpoint_pages(cls, options) -> int:
    """Pages a worker reads between two writes of its shards (most batches are one chunk)."""
    import math

    return max(1, math.ceil(CHECKPOINT_S / max(0.01, engine_seconds(cls, options)[1])))


class ResultLost(RuntimeError):
    """A call that Lithops counts as done without the worker's result for its batch."""


class OutputUnwritable(OSError):
    """The worker read its pages but the output refused the shards for good (full, read-only)."""


def _not_result_of(task: BatchTask, result: Any) -> str | None:
    """Why `result` is not the worker's report on `task` (None when it is)."""
    if not isinstance(result, BatchResult):
        return f"Lithops returned {type(result).__name__} instead of the worker's result"
    if result.run_id != task.run_id or result.batch_id != task.batch_id:
        return (f"its result belongs to batch {result.batch_id!r} of run {result.run_id!r}, "
                f"not batch {task.batch_id!r} of run {task.run_id!r}")
    got = sorted(str(p.get("page_id")) for p in result.pages or [])
    if got != sorted(task.page_ids()):
        return f"its result lists {len(got)} pages, not the batch's {len(task.pages)}"
    return None


def _finish_batch(summary: RunSummary, task: BatchTask, result: BatchResult | None, error: BaseException | None,
                  retries: int, on_batch: Callable[[BatchResult], None] | None,
                  on_result: Callable[[BatchResult], None] | None = None) -> None:
    if error is not None:
        summary.failed_batches += 1
        try:  # the chunks its worker wrote before it died stand; the rest become error rows
            saved = checkpointed(task)
        except Exception:
            saved = {}
        rest = task.with_pages(p for p in task.pages if str(p.page_id) not in saved)
        try:
            result = _record_failed_batch(rest, error, retries) if rest.pages else _failed_pages(rest, "", "")
        except Exception as exc:  # the output storage itself is failing: report, do not crash
            result = _unrecorded(rest, error, exc)
            summary.unrecorded += len(result.pages)
        result.pages = list(saved.values()) + result.pages
    _account(summary, result)
    if on_result:
        on_result(result)
    if on_batch:
        on_batch(result)


def _account(summary: RunSummary, result: BatchResult) -> None:
    summary.engine_version = summary.engine_version or result.engine_version
    if result.peak_rss_mb:
        summary.max_peak_rss_mb = max(summary.max_peak_rss_mb or 0, result.peak_rss_mb)
    for p in result.pages:
        summary.page_seconds += (p.get("duration_ms") or 0) / 1000
        summary.prompt_tokens += p.get("prompt_tokens") or 0
        summary.completion_tokens += p.get("completion_tokens") or 0
        if p.get("cost_usd") is not None:
            summary.cost_usd = (summary.cost_usd or 0) + p["cost_usd"]
        if p["status"] == STATUS_OK:
            summary.ok += 1
        elif p["status"] == STATUS_PENDING:
            summary.pending += 1
        else:
            summary.failed += 1
            summary.error_kinds[p["error_kind"]] += 1
            if len(summary.examples) < 5:
                summary.examples.append(p)


def _failed_pages(task: BatchTask, kind: str, message: str, status: str = STATUS_ERROR) -> BatchResult:
    """The result of a batch whose worker reported nothing: every page failed with `message`."""
    return BatchResult(batch_id=task.batch_id, run_id=task.run_id, engine_version=None,
                       pages=[{"page_id": p.page_id, "status": status, "error_kind": kind, "error": message}
                              for p in task.pages])


def _unrecorded(task: BatchTask, error: BaseException, write_error: BaseException) -> BatchResult:
    message = error_text(f"batch {task.batch_id} failed ({type(error).__name__}: {error_text(error, limit=200)}) and "
                         f"its error rows could not be written either ({type(write_error).__name__}: "
                         f"{error_text(write_error, limit=200)})")
    return _failed_pages(task, "not_recorded", message)


def _record_failed_batch(task: BatchTask, error: BaseException, retries: int) -> BatchResult:
    """A call that failed after its retries: its pages become error rows.

    Written under a name of its own (never over the worker's shard, which may
    exist if the call finished but its result was lost); the views prefer any
    success over these rows.
    """
    # Lithops reports a worker killed by SIGKILL (OOM killer, operator) as MemoryError,
    # and a call killed at its time limit as TimeoutError.
    kind = {MemoryError: "worker_killed", TimeoutError: "batch_timeout", ResultLost: "result_lost",
            OutputUnwritable: "output_unwritable"}.get(
        type(error), "batch_failed")
    tries = "not retried" if isinstance(error, OutputUnwritable) else f"{retries} retries"
    return _record_pages(task, STATUS_ERROR, kind,
                         error_text(f"batch {task.batch_id} failed ({tries}): {type(error).__name__}: {error}"))


def _record_pages(task: BatchTask, status: str, kind: str, message: str) -> BatchResult:
    """Rows for a batch's pages that its worker did not write (failed, or left pending)."""
    now = datetime.now(timezone.utc)
    rows = [page_row(task, p, status=status, error_kind=kind, error=message, processed_at=now) for p in task.pages]
    write_page_rows(task.out, task.engine, client_rows_name(task, status), rows, list(task.extra_columns))
    return _failed_pages(task, kind, message, status)
