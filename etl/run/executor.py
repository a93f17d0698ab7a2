"""The one module that talks to Lithops: configuration and a retrying map.

Kept thin and apart from the core (like cubed's Lithops executor): it takes a
module-level function and a list of tasks, and yields each task's result or
exception as calls complete. A failed or killed call is retried by Lithops'
RetryingFunctionExecutor; one that still fails is reported, the others go on.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import sysconfig
import threading
import uuid
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable, Iterator

import yaml

from etl.errors import ConfigError

# The embedded default: Lithops' localhost backend and storage, no cloud account,
# no Docker. `runtime` is filled with this interpreter, through local_runtime() (a bare
# `python` on PATH may be another one and then the client hangs); version 1 forks workers from one
# runner (~15 ms a call instead of ~370 ms for a fresh interpreter).
DEFAULT_CONFIG: dict[str, Any] = {
    "lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING"},
    "localhost": {"version": 1},
}


def load_config(config_file: str | None = None, backend: str | None = None, workers: int | None = None) -> dict:
    """The Lithops config: `config_file`, else ./lithops.yaml, else the embedded default.

    `backend` and `workers` override the file.
    """
    path = config_file or ("lithops.yaml" if Path("lithops.yaml").is_file() else None)
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"Lithops config file not found: {config_file}")
    config = copy.deepcopy(DEFAULT_CONFIG)
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of Lithops settings")
        for key, value in loaded.items():
            if isinstance(value, dict):
                config.setdefault(key, {}).update(value)
            else:
                config[key] = value
    lith = config.setdefault("lithops", {})
    if backend:
        lith["backend"] = backend
        if backend != "localhost" and lith.get("storage") == "localhost":
            raise ConfigError(f"backend={backend} needs object storage: set lithops.storage in {path or 'lithops.yaml'}")
    be = lith.get("backend", "localhost")
    if be == "localhost":
        local = config.setdefault("localhost", {})
        local.setdefault("runtime", local_runtime())
        local.setdefault("version", 1)
        if workers:
            local["worker_processes"] = workers
        lith.setdefault("storage", "localhost")
    elif workers:
        lith["max_workers"] = workers
        config.setdefault(be, {})["max_workers"] = workers
    return config


def local_runtime() -> str:
    """The interpreter localhost jobs run with: this one, with the worker preloaded
    (etl/run/local_runtime.py) when the package's entry point is installed beside it."""
    for scripts in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = scripts / "comic-ocr-local-runtime"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return sys.executable


PRELOAD_KEY = "comic_ocr"
# Lithops names an executor `<session>-<counter>` from two environment variables that child
# processes inherit: two runs started by one process that had used Lithops would both be
# `<session>-<n+1>`, share job files and read each other's results. Each run opens a session
# of its own (under a lock: runs may start from threads of one process).
_SESSION_LOCK = threading.Lock()


def new_function_executor(config: dict):
    """A Lithops FunctionExecutor whose executor id no other run shares."""
    import lithops
    from lithops.constants import SESSION_ID_ENV

    with _SESSION_LOCK:
        os.environ[SESSION_ID_ENV] = uuid.uuid4().hex[:12]
        return lithops.FunctionExecutor(config=config, log_level=config["lithops"].get("log_level", "WARNING"))  # a config section of our own: Lithops ignores it


LOCAL_WORKDIR_MB = 64  # Lithops copies its own package (~8 MB) there, then job files and results


def check_local_workdir(need_mb: int = LOCAL_WORKDIR_MB) -> str | None:
    """Why Lithops' localhost working folder (under TMPDIR) cannot take a run, or None.

    Lithops writes its package, job files and results there before any call runs; a full or
    unwritable TMPDIR used to end the run in a 60-line traceback."""
    import shutil
    import tempfile

    from lithops.constants import LITHOPS_TEMP_DIR

    try:
        os.makedirs(LITHOPS_TEMP_DIR, exist_ok=True)
        free_mb = shutil.disk_usage(LITHOPS_TEMP_DIR).free / 2**20
        if free_mb < need_mb:
            return (f"Lithops' working folder {LITHOPS_TEMP_DIR} has {free_mb:.1f} MB free and needs about "
                    f"{need_mb} MB: free some space there or point TMPDIR at a larger disk")
        with tempfile.NamedTemporaryFile(dir=LITHOPS_TEMP_DIR, prefix=".probe-"):
            pass
    except OSError as exc:
        return (f"Lithops' working folder {LITHOPS_TEMP_DIR} cannot be written ({exc.strerror or exc}): "
                "point TMPDIR at a writable disk")
    return None


def drop_local_job_files(job_keys: set[str]) -> None:
    """Remove what Lithops' localhost backend leaves of finished jobs: the job file (left behind
    when a run is interrupted and its runner killed) and the job's `.done` mark."""
    import glob

    from lithops.constants import JOBS_DIR, JOBS_PREFIX, LITHOPS_TEMP_DIR

    for key in job_keys:
        for path in [*glob.glob(os.path.join(glob.escape(LITHOPS_TEMP_DIR), "*", JOBS_PREFIX, f"{glob.escape(key)}-job.json")),
                     os.path.join(JOBS_DIR, f"{key}.done")]:
            try:
                os.remove(path)
            except OSError:
                pass


def backend_of(config: dict) -> str:
    return config.get("lithops", {}).get("backend", "localhost")


def workers_of(config: dict) -> int:
    be = backend_of(config)
    if be == "localhost":
        return int(config.get("localhost", {}).get("worker_processes") or os.cpu_count() or 1)
    return int(config.get(be, {}).get("max_workers") or config["lithops"].get("max_workers") or 100)


# Storage settings workers need to resolve URIs the way the client does. Forwarded
# to cloud workers with each call; anything that looks like a secret never is
# (cloud workers authenticate with their own role or identity).
STORAGE_ENV_PREFIXES = ("FSSPEC_", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "GOOGLE_CLOUD_PROJECT",
                        "AZURE_STORAGE_ACCOUNT_NAME")
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "CREDENTIAL", "_KEY", "SAS")


def storage_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {
        k: v for k, v in environ.items()
        if k.startswith(STORAGE_ENV_PREFIXES) and not any(w in k.upper() for w in SECRET_WORDS)
    }


class LithopsExecutor:
    """map(fn, tasks) over Lithops with retries, yielding (index, result, error)."""

    def __init__(self, config: dict, retries: int = 2, call_timeout: float | None = None,
                 preload: tuple[str, ...] = ()):
        self.config = config
        self.retries = retries
        self.call_timeout = call_timeout
        self.preload = tuple(preload)  # modules the localhost runner imports before it forks (local_runtime)
        self.retried = 0  # failed attempts that were run again, over every map

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any, BaseException | None]]:
        """Run `fn` on each task, in Lithops jobs of bounded size submitted as workers free up;
        yield (index in `tasks`, result, error) as calls complete."""
        import lithops

        config = self.config
        if self.preload and backend_of(config) == "localhost":
            # Travels in the job file, where etl/run/local_runtime.py reads it.
            config = {**config, PRELOAD_KEY: {"preload": list(self.preload)}}
        logging.getLogger("lithops").setLevel(config["lithops"].get("log_level", "WARNING"))
        fexec = new_function_executor(config)
        job_keys: set[str] = set()
        try:
            yield from self._map(lithops, fexec, fn, tasks, job_keys)
        finally:
            if backend_of(config) == "localhost":
                drop_local_job_files(job_keys)

    def _map(self, lithops, fexec, fn, tasks, job_keys: set[str]):
        with lithops.RetryingFunctionExecutor(fexec) as rexec:
            # A dict in the map data would be taken as keyword arguments: wrap each.
            # Local workers inherit this environment; cloud workers get the storage settings.
            extra_env = storage_env() if backend_of(self.config) != "localhost" else None
            jobs = job_slices(tasks, job_data_bytes(self.config))
            index: dict[int, int] = {}
            submitted: list = []
            pending: list = []
            # Keep every worker busy with a call queued behind it, and no more: a million-page run
            # holds a few jobs' tasks at a time, not all of them.
            queued = 2 * workers_of(self.config)
            try:
                while True:
                    while len(pending) < queued and (job := next(jobs, None)) is not None:
                        if isinstance(job, TooLarge):
                            yield job.index, None, job
                            continue
                        # include_modules=None: ship no code. The package is installed where workers run
                        # (this venv locally, the runtime image in the cloud); analysing and pickling its
                        # imports (Polars, PyArrow, ...) cost seconds of start-up on every run.
                        futures = rexec.map(
                            fn, [(tasks[i],) for i in job], retries=self.retries, extra_env=extra_env or None,
                            timeout=int(self.call_timeout) if self.call_timeout else None, include_modules=None,
                        )
                        index.update((id(f), i) for f, i in zip(futures, job))
                        submitted += futures
                        pending += futures
                    if not pending:
                        return
                    pending = yield from self._wait(rexec, pending, index)
            finally:  # a retry is a new job: its key is known only now
                job_keys.update(f.response_future.job_key for f in submitted)

    def _wait(self, rexec, pending: list, index: dict):
        """Yield what the next poll finds done; return the calls still pending."""
        from lithops.wait import ANY_COMPLETED

        done, pending = rexec.wait(
            pending, throw_except=False, return_when=ANY_COMPLETED, show_progressbar=False,
            # Poll often: a finished batch is reported (and a short job ends) sooner. Locally a
            # poll lists a folder; in the cloud it is a LIST request on the bucket.
            wait_dur_sec=0.05 if backend_of(self.config) == "localhost" else 0.2,
        )
        for f in done:
            self.retried += min(getattr(f, "failure_count", 0), self.retries)
            try:
                yield index[id(f)], f.result(), None
            except Exception as exc:  # this batch failed after its retries
                yield index[id(f)], None, exc
        return list(pending)


class TooLarge(ValueError):
    """One call's data alone is more than a Lithops job may carry: it is reported, never sent."""

    def __init__(self, index: int, size: int, limit: int):
        super().__init__(f"this batch's data is {size / 2**20:.1f} MiB, more than the {limit / 2**20:.1f} MiB "
                         "one Lithops call may carry: give a smaller batch=")
        self.index = index


def job_data_bytes(config: dict) -> int:
    """The call data one Lithops job may carry: half of Lithops' own limit (`lithops.data_limit`, 4 MiB
    by default), since Lithops adds its own framing to what it measures."""
    from lithops.constants import MAX_AGG_DATA_SIZE

    limit = config.get("lithops", {}).get("data_limit", MAX_AGG_DATA_SIZE)
    return int((limit or MAX_AGG_DATA_SIZE) * 2**20 // 2)


MAX_CALLS_PER_JOB = 1000  # a job's calls are listed and polled together: keep each job's list short


def job_slices(tasks, limit: int):
    """The tasks' indices cut into Lithops jobs whose data stays under `limit` bytes.

    Lithops sends one job's data as one object and refuses more than its `data_limit`: a run of
    some 30,000 pages (or a cascade stage re-reading 2,000 pages' lines) in one map did not start.
    Each task is measured as it is pickled; one that alone passes the limit is a `TooLarge`."""
    import pickle

    job: list[int] = []
    size = 0
    for i in range(len(tasks)):
        n = len(pickle.dumps(tasks[i], protocol=pickle.HIGHEST_PROTOCOL))
        if n > limit:
            yield TooLarge(i, n, limit)
            continue
        if job and (size + n > limit or len(job) >= MAX_CALLS_PER_JOB):
            yield job
            job, size = [], 0
        job.append(i)
        size += n
    if job:
        yield job
