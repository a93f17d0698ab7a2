"""The interpreter Lithops' localhost backend runs jobs with: Python, with the worker preloaded.

Lithops starts `<runtime> runner.py run_job JOB` once per job and forks every call from
that runner, so whatever the runner has imported, each call inherits for free. Plain
`python` imports nothing: each call then re-imports PyArrow, NumPy, Pillow and fsspec
when it unpickles `process_batch` (0.5-0.9 s a call here, a fifth of a small batch).
This entry point imports the worker first and then runs the runner as `python` would.

It takes `python`'s place only for a script path and its arguments (all Lithops
uses); anything else goes to the real interpreter unchanged.
"""

from __future__ import annotations

import os
import runpy
import sys

# Imported before Lithops forks: modules that are safe to fork after import
# (no threads or native pools started at import time).
PRELOAD = ("etl.worker", "engines.base")


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):  # `-c`, `-m`, `--version`: not a runner call
        os.execv(sys.executable, [sys.executable, *args])
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # a broken preload must not stop the job: the call imports it again
            pass
    script = args[0]
    sys.argv = args
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python script.py` sets it
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
