"""Leases on paid work in flight: an API engine's call marks its pages while it reads them.

A client killed mid-run leaves its calls' requests in flight: they are paid, and their pages are
written only when the answers come. A rerun started meanwhile saw those pages as not done and paid
for them again. So a call that pays for its requests (its task has a price) writes a lease,
`OUT/_inflight/engine=E/<run>-<batch>.json`, before its first request and removes it after its
shards are written; a run with a price waits, before it plans, while another run's lease on its
pages is live (its worker alive on this host, or, elsewhere, the call's time limit not passed).
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Callable

from etl.dataset import storage

LEASE_DIR = "_inflight"
POLL_S = 0.5


def lease_uri(out: str, engine: str, name: str = "") -> str:
    return storage.join(out, LEASE_DIR, f"engine={engine}", name) if name else storage.join(out, LEASE_DIR, f"engine={engine}")


def take(out: str, engine: str, run_id: str, batch_id: str, pages: list[str], limit_s: float | None) -> str | None:
    """Write this call's lease; its URI, or None when the output cannot hold one (the run goes on)."""
    import psutil

    uri = lease_uri(out, engine, f"{run_id}-{batch_id}.json")
    lease = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
             "started": psutil.Process().create_time(), "until": time.time() + (limit_s or 3600), "pages": pages}
    try:
        fs, path = storage.url_to_fs(uri)
        fs.makedirs(os.path.dirname(path), exist_ok=True)
        fs.pipe_file(path, json.dumps(lease).encode())
        return uri
    except Exception:  # a lease is a courtesy to a rerun: never a reason to fail the call
        return None


def release(uri: str | None) -> None:
    if uri is None:
        return
    try:
        fs, path = storage.url_to_fs(uri)
        fs.rm_file(path)
    except Exception:
        pass


def live(out: str, engine: str, run_id: str) -> dict[str, set[str]]:
    """Other runs' live leases on `engine` in `out`: lease URI -> its pages. Dead ones are removed."""
    import psutil

    fs, root = storage.url_to_fs(lease_uri(out, engine))
    try:
        paths = fs.find(root)
    except (FileNotFoundError, OSError):
        return {}
    found = {}
    for path in paths:
        try:
            lease = json.loads(fs.cat_file(path))
        except Exception:  # half written, or removed meanwhile
            continue
        if lease.get("run_id") == run_id:
            continue
        if lease.get("host") == socket.gethostname():
            try:
                alive = abs(psutil.Process(lease["pid"]).create_time() - lease["started"]) < 1e-3
            except (psutil.Error, KeyError, TypeError):
                alive = False
        else:
            alive = time.time() < float(lease.get("until") or 0)
        if alive:
            found[path] = set(map(str, lease.get("pages") or []))
        else:
            try:
                fs.rm_file(path)
            except Exception:
                pass
    return found


def await_others(out: str, engine: str, run_id: str, pages: set[str], on_wait: Callable[[str], None] | None,
                 longest_s: float) -> None:
    """Wait while another run's live lease covers any of `pages` (at most `longest_s`)."""
    deadline = time.monotonic() + longest_s
    told = False
    while time.monotonic() < deadline:
        busy = {p for leased in live(out, engine, run_id).values() for p in leased} & pages
        if not busy:
            return
        if not told and on_wait:
            on_wait(f"waiting for {len(busy)} page(s) an earlier run of {engine} is still reading: their API "
                    "requests are paid, and reading them again now would pay twice")
            told = True
        time.sleep(POLL_S)
