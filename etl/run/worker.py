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

from engines.redact import error_text, redact, secrets_from_env
from etl.dataset import layout as dataset, storage
from etl.run import images
from etl.dataset.tasks import BatchResult, BatchTask, PageTask
from etl.dataset.layout import PAGE_SUMMARY_KEYS, checkpointed, chunk_shard_name, chunks_of, page_row
from etl.errors import EngineError, InputError, PageError, PageTimeout, TransientError
from etl.dataset.schema import STATUS_ERROR, STATUS_OK, STATUS_PENDING, PageResult

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

    budget = Allowance(task.budget_usd, task.unit_cost_usd) if task.budget_usd is not None else None
    concurrency = type(engine).concurrency(engine.options) if engine is not None else 1
    summaries: list[dict] = []
    stopped = False
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
    before it is sent, at the dearest cost a request has had so far (the client's figure from
    earlier batches, else this batch's own: until one is known, one page at a time), and settled
    at what the answer cost."""

    def __init__(self, usd: float, unit_usd: float | None):
        self.left, self.unit, self.in_flight = usd, unit_usd, 0
        self.cond = threading.Condition()

    def take(self, units: int) -> float | None:
        """Reserve a page of `units` requests; None when the allowance cannot cover it."""
        with self.cond:
            while self.unit is None and self.in_flight:  # the first answer tells the price
                self.cond.wait()
            need = units * (self.unit or 0.0)
            if self.left <= 0 or need > self.left + 1e-12:
                return None
            self.left -= need
            self.in_flight += 1
            return need

    def settle(self, reserved: float, cost: float | None, units: int) -> None:
        with self.cond:
            self.left += reserved - (cost or 0.0)
            if cost is not None and units:
                self.unit = max(self.unit or 0.0, cost / units)
            self.in_flight -= 1
            self.cond.notify_all()


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
            data = _read(page.image_uri, task.max_bytes or DEFAULT_MAX_BYTES)
            image = images.decode(data, task.max_pixels or images.DEFAULT_MAX_PIXELS)
            row["width"], row["height"] = image.size
            result = _read_within(engine, image, lines, budget, task.price)
    except BudgetSpent as exc:
        row.update(status=STATUS_PENDING, error_kind="budget", error=str(exc), cost_usd=exc.spent or None)
    except PageError as exc:
        row.update(status=STATUS_ERROR, error_kind=exc.kind, error=_short(exc))
    except MemoryError:
        row.update(status=STATUS_ERROR, error_kind="out_of_memory", error="the engine ran out of memory on this page")
    except Exception as exc:  # an engine bug on one page must not sink the batch
        row.update(status=STATUS_ERROR, error_kind=EngineError.kind, error=_short(exc))
    else:
        secrets = secrets_from_env()  # once a page, not once per element
        confs = [e.confidence for e in result.elements if e.level == "line" and e.confidence is not None]
        row.update(
            status=STATUS_OK, text=redact(result.text, secrets), n_elements=len(result.elements),
            mean_confidence=sum(confs) / len(confs) if confs else None,
        )
        _add_usage(row, result.usage, task.price)
        for el in result.elements:
            elements.append({
                **common, "page_id": page.page_id, "level": el.level, "text": redact(el.text, secrets),
                "confidence": el.confidence, "x0": el.x0, "y0": el.y0, "x1": el.x1, "y1": el.y1,
                "polygon": [list(p) for p in el.polygon] if el.polygon else None,
                "reading_order": el.reading_order, "block_id": el.block_id, "line_id": el.line_id,
                "vertical": el.vertical,
            })
    row["duration_ms"] = (time.perf_counter() - started) * 1000
    row["processed_at"] = datetime.now(timezone.utc)
    return row, elements


class BudgetSpent(Exception):
    """The batch's allowance cannot pay for the page's (next) requests: the page waits for a rerun."""

    def __init__(self, spent: float):
        super().__init__("not read: the run's max_cost_usd was spent; rerun with a higher one to read it")
        self.spent = spent  # what the page's requests sent before the stop cost


def _read_within(engine, image, lines: list[dict] | None, budget: Allowance | None, price: dict | None):
    """engine.read (or read_lines, for a cascade stage's lines) paid from `budget`: each request's
    cost reserved before it is sent. Until a request's price is known, one line goes alone."""
    if budget is None:
        return engine.read(image) if lines is None else engine.read_lines(image, lines)
    parts, spent, i = [], 0.0, 0
    todo = [None] if lines is None else lines
    while i < len(todo):
        n = 1 if budget.unit is None else len(todo) - i
        reserved = budget.take(n)
        if reserved is None:
            raise BudgetSpent(spent)
        part = None
        try:
            part = engine.read(image) if lines is None else engine.read_lines(image, todo[i:i + n])
        finally:
            cost = _cost(part.usage, price) if part is not None else None
            budget.settle(reserved, cost, n)
        spent += cost or 0.0
        parts.append(part)
        i += n
    if len(parts) == 1:
        return parts[0]
    usage: dict = {}
    for part in parts:
        for key, value in part.usage.items():
            usage[key] = usage.get(key, 0) + value if isinstance(value, (int, float)) else value
    return PageResult(elements=[e for part in parts for e in part.elements],
                      text="\n".join(p.text for p in parts if p.text), usage=usage)


def _cost(usage: dict, price: dict | None) -> float | None:
    if not price or usage.get("prompt_tokens") is None:
        return None
    return (usage["prompt_tokens"] * price.get("prompt", 0) + (usage.get("completion_tokens") or 0)
            * price.get("completion", 0)) / 1e6


def _add_usage(row: dict, usage: dict, price: dict | None) -> None:
    """Tokens, image size sent and the estimated cost (price: USD per million tokens)."""
    for key in ("prompt_tokens", "completion_tokens", "sent_width", "sent_height"):
        row[key] = usage.get(key)
    row["cost_usd"] = _cost(usage, price)


def _read(uri: str, max_bytes: int = 0) -> bytes:
    scheme = storage.scheme_of(uri)
    if scheme not in storage.SUPPORTED_SCHEMES:
        raise InputError(f"unsupported URI scheme {scheme}:// in {uri}", kind="unsupported_uri")
    try:
        data = storage.read_bytes(uri, max_bytes)
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
