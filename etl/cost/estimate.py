"""Cost and time model: expected wall time and dollars of a run on a backend.

Per-page costs come from measurements (`costs.yaml`, filled from `just bench`);
prices from the same file. The model: pages are cut into calls of `batch`
pages; a call costs the engine load once plus `batch` pages, on a function whose
CPU share follows its memory (Lambda); calls run in waves of `workers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


from engines.base import DEFAULT_ENGINE
from etl.cost.batching import choose_batch_size
from etl.cost.prices import load_costs, tokens_usd
from etl.errors import ConfigError



@dataclass
class Estimate:
    pages: int
    engine: str
    backend: str
    workers: int
    batch: int
    memory_mb: int
    calls: int
    seconds_per_page: float
    call_s: float
    wall_s: float
    cost_usd: float
    basis: str

    def short(self) -> str:
        return f"about {_duration(self.wall_s)} and ${self.cost_usd:,.2f}"

    def describe(self) -> str:
        per_call = f"{self.batch} page{'s' if self.batch != 1 else ''}"
        return (f"{self.pages:,} pages with {self.engine} on {self.backend}: {self.calls:,} calls of {per_call}, "
                f"{self.workers} workers at {self.memory_mb} MB -> about {_duration(self.wall_s)} and ${self.cost_usd:,.2f} "
                f"({self.seconds_per_page:.1f} s/page; {self.basis})")


def estimate(pages: int, engine: str = DEFAULT_ENGINE, backend: str = "aws_lambda", workers: int = 100,
             batch: int | None = None, memory_mb: int | None = None, costs: dict | None = None) -> Estimate:
    costs = costs or load_costs()
    if engine not in costs["engines"]:
        raise ConfigError(f"no measured costs for engine {engine!r} in costs.yaml (have: {', '.join(costs['engines'])})")
    if backend not in costs["backends"]:
        raise ConfigError(f"no prices for backend {backend!r} in costs.yaml (have: {', '.join(costs['backends'])})")
    e, b = costs["engines"][engine], costs["backends"][backend]
    memory_mb = int(memory_mb or e.get("memory_mb", 2048))
    if memory_mb < e["peak_mb"]:
        raise ConfigError(f"{memory_mb} MB is below {engine}'s measured peak of {e['peak_mb']} MB per worker")
    vcpu = memory_mb / b["mb_per_vcpu"] if "mb_per_vcpu" in b else b.get("vcpu", 1)
    speed = min(1.0, vcpu)  # engines run one thread per worker: more vCPU does not help
    spp = e["cpu_s_per_page"] / speed
    if batch is None:  # as the planner would choose it
        from engines import get_engine

        batch = choose_batch_size(pages, workers, e["load_s"] / speed, spp, get_engine(engine).max_batch_size,
                                  call_s=b.get("call_overhead_s", 0.2))
    calls = math.ceil(pages / batch) if pages else 0
    call_s = b.get("call_overhead_s", 0) + e["load_s"] / speed + batch * spp
    if "max_timeout_s" in b and call_s > b["max_timeout_s"]:
        raise ConfigError(f"a call of {batch} pages takes ~{call_s:.0f} s, over {backend}'s limit of "
                          f"{b['max_timeout_s']} s: use a smaller batch=")
    waves = math.ceil(calls / max(1, workers)) if calls else 0
    wall_s = b.get("start_s", 0) + waves * call_s
    busy_s = calls * call_s
    gb = memory_mb / 1024
    cost = (busy_s * gb * b.get("price_gb_s", 0) + busy_s * vcpu * b.get("price_vcpu_s", 0)
            + busy_s / 3600 * (vcpu * b.get("price_vcpu_h", 0) + gb * b.get("price_gb_h", 0))
            + calls * b.get("price_per_request", 0))
    basis = f"measured {e['cpu_s_per_page']} s/page and {e['load_s']} s load on one core, prices from costs.yaml"
    return Estimate(pages, engine, backend, workers, batch, memory_mb, calls, spp, call_s, wall_s, cost, basis)


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


@dataclass
class ApiEstimate:
    """A run of an API model over whole pages: what its tokens cost at costs.yaml's price."""

    pages: int
    engine: str
    model: str
    cost_usd: float | None
    basis: str

    def describe(self) -> str:
        cost = f"about ${self.cost_usd:,.4f}" if self.cost_usd is not None else "no estimate"
        return (f"{self.pages:,} pages with {self.engine} ({self.model}): {cost} ({self.basis}; the workers' own "
                "time on the backend, waiting for the API, is not included)")


def estimate_api(pages: int, engine: str, model: str | None = None, out: str | None = None,
                 costs: dict | None = None) -> ApiEstimate:
    """`pages` sent whole to an API engine's `model` (default: the engine's), at the tokens a page has
    cost in `out` (a dataset it has read) where given, else DEFAULT_PAGE_TOKENS."""
    from engines import get_engine

    costs = costs or load_costs()
    model = model or get_engine(engine).default_model
    price = (costs.get("models") or {}).get(model)
    if price is None:
        return ApiEstimate(pages, engine, model, None, f"{model} has no price in costs.yaml `models:`")
    tokens: dict[tuple[str, str], tuple[float, float]] = {}
    if out:
        from etl.dataset.views import connect

        con = connect(out, on_warning=lambda w: None)
        try:
            tokens = measured_tokens(con)
        finally:
            con.close()
    usd, why = api_cost(engine, model, price, pages, 0, tokens)
    return ApiEstimate(pages, engine, model, usd, why + (f", measured on {out}" if (engine, "page") in tokens else ""))


# Tokens assumed where none were measured (`measured_tokens`):
DEFAULT_LINE_TOKENS = (150, 15)  # prompt and completion tokens of one line's crop
DEFAULT_PAGE_TOKENS = (2200, 400)  # of one page sent whole: a 1536 px image and its text


def measured_tokens(con) -> dict[tuple[str, str], tuple[float, float]]:
    """(engine, "page" | "line") -> mean prompt and completion tokens of a page sent whole, of a line
    re-read, in the dataset of connection `con` (API engines only: the others count none)."""
    rows = con.sql(
        "SELECT engine, 'line', sum(prompt_tokens) / sum(lines_reread), sum(completion_tokens) / sum(lines_reread) "
        "FROM pages WHERE reread_of IS NOT NULL AND status = 'ok' AND lines_reread > 0 AND prompt_tokens IS NOT NULL "
        "GROUP BY 1 UNION ALL SELECT engine, 'page', avg(prompt_tokens), avg(completion_tokens) FROM pages "
        "WHERE reread_of IS NULL AND status = 'ok' AND prompt_tokens IS NOT NULL GROUP BY 1").fetchall()
    return {(engine, unit): (tp, tc) for engine, unit, tp, tc in rows}


def api_cost(engine: str, model: str, price: dict, pages: float, lines: float,
             tokens: dict[tuple[str, str], tuple[float, float]]) -> tuple[float, str]:
    """USD of sending `pages` whole and `lines` as crops to an API model at `price` (costs.yaml), at
    the tokens measured (`measured_tokens`) or else assumed; and a line saying which."""
    usd, why = 0.0, []
    for unit, n, default in (("page", pages, DEFAULT_PAGE_TOKENS), ("line", lines, DEFAULT_LINE_TOKENS)):
        if n:
            tp, tc = tokens.get((engine, unit), default)
            usd += n * tokens_usd(tp, tc, price)
            why.append(f"{tp:.0f}+{tc:.0f} tokens a {unit}" + ("" if (engine, unit) in tokens else " (assumed)"))
    return usd, f"{', '.join(why) or 'nothing sent'} at {model}'s price"


