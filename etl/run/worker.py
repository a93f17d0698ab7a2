"""The Lithops worker: one call reads one batch of pages and writes its shards.

`process_batch` is module-level and pure (everything it needs is in the task;
everything it does is in its shards and its return value), so Lithops can ship
it to any backend. The engine is created once per call: a call is a fresh
(forked) process on every backend, and the model load is paid once per batch.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
import time
from datetime import datetime, timezone

from engines.base import line_crop_size
from engines.redact import clean_text, error_text, secrets_from_env
from etl.cost.prices import tokens_usd
from etl.dataset import layout as dataset, storage
from etl.run import images, leases
from etl.dataset.tasks import BatchResult, BatchTask, PageTask
from etl.dataset.layout import PAGE_SUMMARY_KEYS, checkpointed, chunk_shard_name, chunks_of, page_row
from etl.errors import EngineError, InputError, PageError, PageTimeout, TransientError
from etl.dataset.schema import STATUS_ERROR, STATUS_OK, STATUS_PENDING

DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # a comic page is a few MB; a 1 GB body is a mistake or an attack


def process_batch(task: BatchTask | dict) -> BatchResult:
    """Run one batch; return its result (per-page status, timings, peak memory).

    Never raises for a bad page: each failure becomes a page row with
    status='error'. Raises only when the shards cannot be written, so that
    Lithops retries the whole call. Pages are written in chunks of
    `task.checkpoint` pages: a call killed midway keeps its finished chunks,
    and its retry reads only the rest.
    """
    t0 = time.perf_counter()
    task = BatchTask.of(task)
    engine_name = task.engine
    common = {"engine": task.engine, "config_hash": task.config_hash, "run_id": task.run_id, "batch_id": task.batch_id}
    if client_gone(task.client):  # before the model load: a queue of orphaned calls ends fast
        return _result(task, None, [], t0, 0.0, abandoned=True)
    chunks = chunks_of(task)
    earlier = checkpointed(task) if len(chunks) > 1 else {}
    engine, engine_version, init_error = None, None, None
    try:
        from engines import get_engine

        cls = get_engine(engine_name)
        engine = cls(cls.parse_options(task.options))
        engine_version = engine.version()
    except Exception as exc:  # engine cannot start here: every page gets the reason
        init_error = PageError(f"engine {engine_name!r} failed to start: {_short(exc)}", kind="engine_init")
    load_s = time.perf_counter() - t0

    def one(page: PageTask, timed: bool) -> tuple[dict, list[dict]] | None:
        if client_gone(task.client):  # its client was killed: what is read is kept, the rest waits
            return None
        return _process_page(engine, init_error, page, task, common, engine_version, timed, budget)

    budget = Allowance(task.budget_usd) if task.budget_usd is not None else None
    concurrency = type(engine).concurrency(engine.options) if engine is not None else 1
    summaries: list[dict] = []
    stopped = False
    # Paid requests: a rerun must not send these pages again while this call still reads them.
    lease = (leases.take(task.out, task.engine, task.run_id, task.batch_id, task.page_ids(), task.call_timeout)
             if engine is not None and type(engine).model(engine.options) is not None else None)
    try:
        for k, chunk in enumerate(chunks):
            if earlier and all(str(p.page_id) in earlier for p in chunk):
                summaries += [earlier[str(p.page_id)] for p in chunk]
                continue
            if concurrency > 1:
                # API engines: pages wait on the network, so several are in flight; each
                # request has its own timeout (the page alarm works in the main thread only).
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(concurrency) as pool:
                    done = list(pool.map(lambda p: one(p, False), chunk))
            else:
                done = [one(p, True) for p in chunk]
            done = [d for d in done if d is not None]
            stopped = len(done) < len(chunk)
            if done:
                if error := _write_chunk(task, chunk_shard_name(task, k), done):
                    return _result(task, engine_version, summaries + _summaries(done), t0, load_s, write_error=error)
                summaries += _summaries(done)
            if stopped:
                break
    finally:
        if engine is not None:
            engine.close()
        leases.release(lease)  # after the shards: a rerun waiting on it then finds these pages done
    if stopped or not summaries:  # its client died: nobody reads this; the shards hold what was read
        return _result(task, engine_version, summaries, t0, load_s, abandoned=True)
    return _result(task, engine_version, summaries, t0, load_s)


def _write_chunk(task: BatchTask, name: str, done: list[tuple[dict, list[dict]]]) -> str | None:
    """Write one chunk's shards; the reason when the output refuses them for good, else None."""
    try:
        dataset.write_batch(task.out, task.engine, name, [row for row, _ in done],
                            [e for _, elements in done for e in elements], list(task.extra_columns))
    except OSError as exc:
        if exc.errno not in dataset.PERMANENT_WRITE_ERRNOS:
            raise  # Lithops retries the call: a network blip, a throttled store
        # A retry would read every page again only to fail the same way: report it instead.
        return f"cannot write the batch's shards: {_short(exc)}"
    except Exception as exc:  # not I/O (a value no column takes): a retry would pay for every page again
        return f"cannot write the batch's shards: {type(exc).__name__}: {_short(exc)}"
    return None


def _summaries(done: list[tuple[dict, list[dict]]]) -> list[dict]:
    return [{k: row.get(k) for k in PAGE_SUMMARY_KEYS} for row, _ in done]


def _result(task: BatchTask, engine_version: str | None, summaries: list[dict], t0: float, load_s: float,
            **flags) -> BatchResult:
    return BatchResult(batch_id=task.batch_id, run_id=task.run_id, engine_version=engine_version, pages=summaries,
                       load_s=load_s, elapsed_s=time.perf_counter() - t0, peak_rss_mb=_peak_rss_mb(), **flags)


def client_identity() -> dict:
    """Who started the run, as a local worker can check it: host, pid and the process's start time
    (a pid alone may be reused by the time a worker looks)."""
    import os
    import socket

    import psutil

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def client_gone(client: dict | None) -> bool:
    """True when the run's client ran on this host and is dead. Lithops' localhost runner outlives a
    client killed with SIGKILL and would read the whole job alone, beside the user's rerun."""
    if not client:
        return False
    import socket

    import psutil

    if client.get("host") != socket.gethostname():
        return False
    try:
        return abs(psutil.Process(client["pid"]).create_time() - client["started"]) > 1e-3
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, KeyError, TypeError):  # cannot tell: keep working
        return False


class Allowance:
    """What a batch may still spend on API requests (max_cost_usd). A page's requests are reserved
    before they are sent at the most they can be billed (`Engine.usage_bound` at the model's price),
    and settled at what they were billed: spend never passes the allowance, whatever the API
    reports or however its prices rise. Nothing waits: a page that does not fit is left pending."""

    def __init__(self, usd: float):
        self.left = usd
        self.lock = threading.Lock()

    def take(self, usd: float) -> bool:
        with self.lock:
            if usd > self.left + 1e-12:
                return False
            self.left -= usd
            return True

    def settle(self, reserved: float, cost: float) -> None:
        with self.lock:
            self.left += reserved - cost


def _process_page(engine, init_error, page: PageTask, task: BatchTask, common: dict, engine_version, timed: bool,
                  budget: Allowance | None = None):
    """One page -> its page row and element rows; every failure becomes the row's error.

    A page with `lines` (a cascade stage) has only those lines re-read (`Engine.read_lines`).
    """
    started = time.perf_counter()
    row = page_row(task, page, engine_version=engine_version)
    lines = page.lines
    elements: list[dict] = []
    try:
        if init_error:
            raise init_error
        # One deadline for the whole page: a stalled HTTP read is the page's timeout, not its batch's.
        with deadline(task.page_timeout if timed else None):
            data = _read_in_time(page.image_uri, task.max_bytes or DEFAULT_MAX_BYTES, None if timed else task.page_timeout,
                                 task.pdf_dpi)
            image = images.decode(data, task.max_pixels or images.DEFAULT_MAX_PIXELS)
            row["width"], row["height"] = image.size
            result = _read_within(engine, image, lines, budget, task.price)
        # What the engine returned becomes rows here: a bad value in an answer (a lone surrogate, a
        # token count that is not a number) fails this page, never its batch.
        secrets = secrets_from_env()  # once a page, not once per element
        confs = [e.confidence for e in result.elements if e.level == "line" and e.confidence is not None]
        page_elements = [{
            **common, "page_id": page.page_id, "level": el.level, "text": clean_text(el.text, secrets),
            "confidence": el.confidence, "x0": el.x0, "y0": el.y0, "x1": el.x1, "y1": el.y1,
            "polygon": [list(p) for p in el.polygon] if el.polygon else None,
            "reading_order": el.reading_order, "block_id": el.block_id, "line_id": el.line_id,
            "vertical": el.vertical,
        } for el in result.elements]
        usage = _usage_fields(result.usage, task.price)
    except BudgetSpent as exc:
        row.update(status=STATUS_PENDING, error_kind="budget", error=str(exc))
    except PageError as exc:
        row.update(status=STATUS_ERROR, error_kind=exc.kind, error=_short(exc), cost_usd=getattr(exc, "cost_usd", None))
    except MemoryError:
        row.update(status=STATUS_ERROR, error_kind="out_of_memory", error="the engine ran out of memory on this page")
    except Exception as exc:  # an engine bug on one page must not sink the batch
        row.update(status=STATUS_ERROR, error_kind=EngineError.kind, error=_short(exc),
                   cost_usd=getattr(exc, "cost_usd", None))
    else:
        row.update(status=STATUS_OK, text=clean_text(result.text, secrets), n_elements=len(result.elements),
                   mean_confidence=sum(confs) / len(confs) if confs else None, **usage)
        elements = page_elements
    row["duration_ms"] = (time.perf_counter() - started) * 1000
    row["processed_at"] = datetime.now(timezone.utc)
    return row, elements


class BudgetSpent(Exception):
    """The batch's allowance cannot pay for the page's requests: the page waits for a rerun."""

    def __init__(self):
        super().__init__("not read: the run's max_cost_usd was spent; rerun with a higher one to read it")


# Errors that come back before a model answers: nothing is billed for them. Any other failure after
# a request went (a timeout, an answer that cannot be used) is counted at the request's bound.
UNBILLED_KINDS = {"rate_limited", "api_error", "auth", "api_rejected", "api_unreachable", "engine_init"}


def request_bounds(engine, image, lines: list[dict] | None) -> list[tuple[int, int]] | None:
    """The most each of a page's requests can be billed, in tokens (None: the engine bills nothing)."""
    if lines is None:
        bound = type(engine).usage_bound(engine.options, *image.size)
        return None if bound is None else [bound]
    bounds = [type(engine).usage_bound(engine.options, *line_crop_size(line), crop=True) for line in lines]
    return None if any(b is None for b in bounds) else bounds


def _read_within(engine, image, lines: list[dict] | None, budget: Allowance | None, price: dict | None):
    """engine.read (or read_lines, for a cascade stage's lines), paid from `budget`: the page's
    requests reserved at their bound before any is sent, settled at what they were billed."""
    bounds = request_bounds(engine, image, lines) if price else None
    reserved = sum(tokens_usd(*b, price) for b in bounds) if bounds else 0.0
    if budget is not None and bounds is not None and not budget.take(reserved):
        raise BudgetSpent()
    try:
        result = engine.read(image) if lines is None else engine.read_lines(image, lines)
    except Exception as exc:
        # Requests went and may be billed (a timeout, an answer that cannot be used): counted at
        # their bound. An error that came before any answer (HTTP 429, 5xx, auth) bills nothing.
        billed = reserved if getattr(exc, "kind", None) not in UNBILLED_KINDS else 0.0
        if bounds is not None:
            exc.cost_usd = billed or None
        if budget is not None and bounds is not None:
            budget.settle(reserved, billed)
        raise
    if budget is not None and bounds is not None:
        spent = _billed(result.usage, price)
        budget.settle(reserved, reserved if spent is None else min(spent, reserved))
    return result


def _billed(usage: dict, price: dict | None) -> float | None:
    """What the engine's requests for a page were billed (the engine's `billed_*` tokens), in USD."""
    tokens = [usage.get("billed_prompt_tokens"), usage.get("billed_completion_tokens")]
    if not price or not all(type(t) is int and t >= 0 for t in tokens):
        return None
    return tokens_usd(*tokens, price)


TOKEN_COLUMN_MAX = 2**31 - 1  # the page table's int32 columns


def _usage_fields(usage: dict, price: dict | None) -> dict:
    """Tokens, image size sent and cost (price: USD per million tokens) for the page row; a value that
    is not a whole number in the column's range is left out (null), never written as it came."""
    fields = {key: value if type(value) is int and 0 <= value <= TOKEN_COLUMN_MAX else None
              for key in ("prompt_tokens", "completion_tokens", "sent_width", "sent_height")
              for value in [usage.get(key)]}
    fields["cost_usd"] = _billed(usage, price)
    return fields


def _read_in_time(uri: str, max_bytes: int, seconds: float | None, pdf_dpi: float | None = None) -> bytes:
    """`_read`, given up after `seconds` where no alarm can bound it: a page read in one of a
    worker's threads (API engines read several pages at once). The reading thread is left to
    end with the call's process; the page is a `timeout` row and its batch-mates go on."""
    if not seconds:
        return _read(uri, max_bytes, pdf_dpi)
    box: dict = {}

    def read() -> None:
        try:
            box["data"] = _read(uri, max_bytes, pdf_dpi)
        except BaseException as exc:  # handed to the page's thread below
            box["error"] = exc

    reader = threading.Thread(target=read, name="page-read", daemon=True)
    reader.start()
    reader.join(seconds)
    if reader.is_alive():
        raise PageTimeout(f"reading {uri} took longer than page_timeout={seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["data"]


def _read(uri: str, max_bytes: int = 0, pdf_dpi: float | None = None) -> bytes:
    scheme = storage.scheme_of(uri)
    if scheme not in storage.SUPPORTED_SCHEMES:
        raise InputError(f"unsupported URI scheme {scheme}:// in {uri}", kind="unsupported_uri")
    try:
        data = storage.read_bytes(uri, max_bytes, pdf_dpi)
        if data is None:
            raise InputError(f"{uri} is larger than max_bytes={max_bytes:,} (raise max_bytes= to read it)",
                             kind="too_large")
        return data
    except PageError:  # the page's deadline, or the size limit
        raise
    except ImportError as exc:  # fsspec backend not installed where the worker runs
        raise InputError(f"cannot read {scheme}:// URIs here: {exc}", kind="unsupported_uri") from None
    except FileNotFoundError:
        raise InputError(f"file not found: {uri}", kind="missing_file") from None
    except IsADirectoryError:
        raise InputError(f"is a directory, not an image: {uri}", kind="is_directory") from None
    except PermissionError:
        raise InputError(f"permission denied: {uri}", kind="permission_denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink loop stays one: no rerun will read it
            raise InputError(f"symbolic link loop: {uri}", kind="symlink_loop") from None
        raise TransientError(f"cannot read {uri}: {type(exc).__name__}: {_short(exc)}", kind="read_failed") from None
    except Exception as exc:
        # Network and object-store faults (OSError, botocore and aiohttp errors): a rerun may succeed.
        raise TransientError(f"cannot read {uri}: {type(exc).__name__}: {_short(exc)}", kind="read_failed") from None


@contextlib.contextmanager
def deadline(seconds: float | None):
    """Raise PageTimeout in this (main) thread after `seconds`; a no-op elsewhere.

    Library code may catch the alarm's exception and raise its own (a broad
    `except` in a model's pre-processing): once the alarm has fired, whatever
    comes out is reported as the timeout it is.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    message = f"page took longer than page_timeout={seconds:g} s"
    fired = False

    def on_alarm(signum, frame):
        nonlocal fired
        fired = True
        raise PageTimeout(message)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except PageTimeout:
        raise
    except Exception as exc:
        if fired:
            raise PageTimeout(message) from exc
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if fired:  # library code caught the alarm's exception and carried on: the page is still over time
        raise PageTimeout(message)


def _short(exc: BaseException) -> str:
    return error_text(exc)


def prepare_to_fork() -> None:
    """Run once by the localhost runner before it forks the calls (etl.run.local_runtime): the
    imports every call would otherwise make again, in each forked child. Pillow loads its format
    plugins on the first open or save of a format it has not preloaded; fsspec imports parts
    lazily; PyArrow imports pandas, if installed, the first time it builds an array from a Python
    list (every call's shard write: 0.2 s a call). Imports only: nothing here starts a thread or
    opens a file a child would share."""
    import importlib

    import pyarrow as pa
    from PIL import Image

    Image.init()
    pa.array([0])
    for name in ("fsspec.implementations.chained", "pyarrow.vendored.version", "resource"):
        importlib.import_module(name)


def _peak_rss_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):
        return None
