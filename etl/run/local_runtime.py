"""The interpreter Lithops' localhost backend runs jobs with: Python, with the worker preloaded.

Lithops starts `<runtime> runner.py run_job JOB` once per job and forks every call from
that runner, so whatever the runner has imported, each call inherits for free. Plain
`python` imports nothing: each call then re-imports PyArrow, NumPy, Pillow and fsspec
when it unpickles `process_batch` (0.5-0.9 s a call here), and the engine's own modules
(pytesseract imports pandas: 0.5 s; the text detector's stack: 1.2 s). This entry point
imports the worker and the modules the engine names (`Engine.preload_modules`, carried
in the job's config by etl.run.executor), calls the `prepare_to_fork()` of each that has one
(Pillow's format plugins, the Tesseract binary's version: work each call would repeat)
and then runs the runner as `python` would.

It takes `python`'s place only for a script path and its arguments (all Lithops
uses); anything else goes to the real interpreter unchanged.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys

from etl.run.executor import PRELOAD_KEY

# Imported before Lithops forks: modules that are safe to fork after import
# (no threads or native pools started at import time).
PRELOAD = ("etl.run.worker", "engines.base")


def job_preloads(args: list[str]) -> list[str]:
    """The modules the job's engine asks for: `runner.py run_job JOB_FILE` -> the job's config."""
    if len(args) < 3 or args[1] != "run_job":
        return []
    try:
        with open(args[2]) as f:
            section = (json.load(f).get("config") or {}).get(PRELOAD_KEY) or {}
        return [m for m in section.get("preload", []) if isinstance(m, str)]
    except (OSError, ValueError, AttributeError):  # no preload is slower, never wrong
        return []


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):  # `-c`, `-m`, `--version`: not a runner call
        os.execv(sys.executable, [sys.executable, *args])
    for name in (*PRELOAD, *job_preloads(args)):
        try:
            module = importlib.import_module(name)
            if callable(prepare := getattr(module, "prepare_to_fork", None)):
                prepare()  # what every call would repeat after its fork, done once here
        except Exception:  # a broken preload must not stop the job: the call does it again
            pass
    # Lithops' runner puts its temp folder first on sys.path, where every process that starts an
    # executor replaces a copy of the Lithops package (rmtree, then rename): a job started while
    # another process does so failed its imports ("No module named 'lithops.worker.utils'") and its
    # run waited for a job that never ran. Imported here from this interpreter's own installation
    # (the copy's source), the runner never reads the shared copy.
    import lithops.worker  # noqa: F401
    import lithops.worker.utils  # noqa: F401

    script = args[0]
    sys.argv = args
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python script.py` sets it
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
