"""The one cost model's figures: costs.yaml (engine timings, model and backend prices), read here alone.

`just bench` measures the engines' figures and writes them there; engines, the planner, the
estimate and the run summary all read them through this module.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import yaml

from etl.errors import ConfigError

# costs.yaml at the top of the checkout, shipped in the wheel as etl/_data/costs.yaml (a link to it).
COSTS_FILE = Path(os.environ.get("COMIC_OCR_COSTS", Path(__file__).resolve().parents[1] / "_data" / "costs.yaml"))


def load_costs(path: str | Path | None = None) -> dict:
    """costs.yaml as a dict (a fresh copy: callers may change it)."""
    path = Path(path or COSTS_FILE)
    if not path.is_file():
        raise ConfigError(f"cost table not found: {path}")
    return yaml.safe_load(path.read_text())


@functools.lru_cache(maxsize=4)
def _cached(path: str) -> dict:
    return load_costs(path)


def costs() -> dict:
    """costs.yaml, read once per process (for the hot paths: planning, pricing each batch)."""
    return _cached(str(COSTS_FILE))


def model_price(model: str | None) -> dict | None:
    """USD per million prompt/completion tokens for an API model (costs.yaml `models:`), or None."""
    if not model:
        return None
    try:
        return (costs().get("models") or {}).get(model)
    except ConfigError:
        return None


def call_overhead_s(backend: str) -> float:
    """Seconds a call costs beyond the engine's own work on `backend` (costs.yaml `backends:`)."""
    b = (costs().get("backends") or {}).get(backend) or (costs().get("backends") or {}).get("aws_lambda") or {}
    return float(b.get("call_overhead_s", 0.2))


def engine_seconds(engine_cls, options, preloaded: bool = False) -> tuple[float, float]:
    """(load seconds, seconds per page) of one core for an engine with these options, from its
    costs.yaml entry (`Engine.cost_entry`); a page's share when the worker overlaps pages.

    `preloaded`: the call runs where the engine's `preload_modules` are already imported (a
    localhost runner), so their import time (`import_s`) is not part of the load.
    """
    name = engine_cls.cost_entry(options)
    entry = (costs().get("engines") or {}).get(name)
    if entry is None:
        raise ConfigError(f"no measured costs for {name!r} in costs.yaml `engines:`")
    load = float(entry["load_s"])
    if preloaded and entry.get("import_s"):
        load = max(0.05, load - float(entry["import_s"]))
    return load, float(entry["cpu_s_per_page"]) / engine_cls.concurrency(options)


def tokens_usd(prompt_tokens: float, completion_tokens: float, price: dict) -> float:
    """USD of tokens at a model's price (USD per million prompt and completion tokens, costs.yaml)."""
    return (prompt_tokens * price.get("prompt", 0) + completion_tokens * price.get("completion", 0)) / 1e6
