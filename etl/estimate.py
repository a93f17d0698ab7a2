"""Cost and time model: expected wall time and dollars of a run on a backend.

Per-page costs come from measurements (`costs.yaml`, filled from `just bench`);
prices from the same file. The model: pages are cut into calls of `batch`
pages; a call costs the engine load once plus `batch` pages, on a function whose
CPU share follows its memory (Lambda); calls run in waves of `workers`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from engines.base import DEFAULT_ENGINE
from etl.errors import ConfigError

# costs.yaml at the top of the checkout, shipped in the wheel as etl/_data/costs.yaml (a link to it).
COSTS_FILE = Path(os.environ.get("COMIC_OCR_COSTS", Path(__file__).resolve().parent / "_data" / "costs.yaml"))


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


def load_costs(path: str | Path | None = None) -> dict:
    path = Path(path or COSTS_FILE)
    if not path.is_file():
        raise ConfigError(f"cost table not found: {path}")
    return yaml.safe_load(path.read_text())


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
        from etl.plan import choose_batch_size

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
        from etl.query import connect

        con = connect(out, on_warning=lambda w: None)
        try:
            tokens = measured_tokens(con)
        finally:
            con.close()
    usd, why = api_cost(engine, model, price, pages, 0, tokens)
    return ApiEstimate(pages, engine, model, usd, why + (f", measured on {out}" if (engine, "page") in tokens else ""))


# What a cascade's estimate assumes without a sample (a dataset already read by its first engine):
DEFAULT_LINES_PER_PAGE = 15
DEFAULT_SHARE = 0.2  # of the lines a stage gets that it leaves doubtful for the next
DEFAULT_LINE_TOKENS = (150, 15)  # prompt and completion tokens of one line's crop
DEFAULT_PAGE_SHARE = 0.2  # of the pages that `pages_when` sends whole
DEFAULT_PAGE_TOKENS = (2200, 400)  # of one page sent whole: a 1536 px image and its text


@dataclass
class CascadeEstimate:
    first: Estimate
    stages: list[dict]  # per later stage: engine, lines, usd, wall_s, basis
    lines_per_page: float
    basis: str

    @property
    def cost_usd(self) -> float:
        return self.first.cost_usd + sum(s["usd"] for s in self.stages)

    def describe(self) -> str:
        out = [f"stage 1: {self.first.describe()}"]
        for k, s in enumerate(self.stages, start=2):
            whole = f"reads ~{s['pages']:,.0f} pages whole and " if s.get("pages") else ""
            out.append(f"stage {k}: {s['engine']} {whole}re-reads ~{s['lines']:,.0f} lines -> about ${s['usd']:,.4f} "
                       f"({s['basis']})")
        out.append(f"in all: about ${self.cost_usd:,.4f} ({self.basis})")
        return "\n".join(out)


def estimate_cascade(pages: int, stages: list[str], when: str | None = None, out: str | None = None,
                     backend: str = "aws_lambda", workers: int = 100, batch: int | None = None,
                     memory_mb: int | None = None, costs: dict | None = None,
                     pages_when: str | None = None) -> CascadeEstimate:
    """A cascade's cost: stage 1 as `estimate`; with `pages_when`, the second stage first reads
    whole the share of pages it picks; each later stage's lines are the share of the lines before
    it (on the other pages) that `when` routes. Shares are measured on `out` (a dataset its first
    engine has read: a sample of the pages will do) where given, else DEFAULT_PAGE_SHARE and
    DEFAULT_SHARE; API pages and lines priced at the tokens one has cost in `out` (else
    DEFAULT_PAGE_TOKENS, DEFAULT_LINE_TOKENS) and costs.yaml's model prices."""
    from engines import get_engine

    costs = costs or load_costs()
    first = estimate(pages, stages[0], backend, workers, batch, memory_mb, costs)
    lines_per_page, share, basis = float(DEFAULT_LINES_PER_PAGE), DEFAULT_SHARE, "assumed lines and shares"
    page_share = DEFAULT_PAGE_SHARE if pages_when else 0.0
    tokens: dict[tuple[str, str], tuple[float, float]] = {}  # (engine, "line" | "page") -> tokens
    if out:
        from etl.cascade import default_when
        from etl.query import connect

        con = connect(out, on_warning=lambda w: None)
        try:
            kept = ""  # with pages_when, lines are measured on the pages it does not send whole
            if pages_when:
                read, picked = con.sql(f"SELECT count(*), count(*) FILTER (WHERE {pages_when}) FROM ({FIRST_TEXT})",
                                       params={"e": stages[0]}).fetchall()[0]
                page_share = picked / max(1, read)
                kept = f" WHERE page_id IN (SELECT page_id FROM ({FIRST_TEXT}) WHERE NOT coalesce({pages_when}, false))"
            n_pages, n_lines, routed = con.sql(
                f"SELECT count(DISTINCT page_id), count(*), count(*) FILTER (WHERE {when or default_when(stages[0])}) "
                f"FROM ({FIRST_LINES}){kept}", params={"e": stages[0]}).fetchall()[0]
            tokens = measured_tokens(con)
        finally:
            con.close()
        if n_pages:
            lines_per_page, share = n_lines / n_pages, routed / max(1, n_lines)
            basis = (f"{lines_per_page:.1f} lines a page and {share:.0%} routed"
                     + (f", {page_share:.0%} of pages whole" if pages_when else "") + f", measured on {n_pages} pages of {out}")
    else:  # a constant condition needs no sample: when=false (whole pages only), pages_when=true
        share = {True: 1.0, False: 0.0}.get(_constant(when), share)
        page_share = {True: 1.0, False: 0.0}.get(_constant(pages_when), page_share) if pages_when else 0.0
        if pages_when:
            basis += f" ({page_share:.0%} of pages whole)"
    rows, whole = [], pages * page_share
    lines = (pages - whole) * lines_per_page
    for k, engine in enumerate(stages[1:]):
        whole = whole if k == 0 else 0.0  # pages read whole by stage 2 are no later stage's
        lines *= share  # a later stage's doubtful share is taken to be the first's
        cls = get_engine(engine)
        model = getattr(cls, "default_model", "")
        price = (costs.get("models") or {}).get(model)
        if price is not None:
            usd, why = api_cost(engine, model, price, whole, lines, tokens)
        else:  # a local engine reading crops: costed as pages, a crop at most a page
            e = estimate(max(1, math.ceil(whole + lines / max(1.0, lines_per_page))), engine, backend, workers, None,
                         None, costs)
            usd, why = e.cost_usd, f"whole pages and crops costed as {e.pages:,} pages on {backend}"
        rows.append({"engine": engine, "pages": whole, "lines": lines, "usd": usd, "basis": why})
    return CascadeEstimate(first, rows, lines_per_page, basis)


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
            usd += n * (tp * price.get("prompt", 0) + tc * price.get("completion", 0)) / 1e6
            why.append(f"{tp:.0f}+{tc:.0f} tokens a {unit}" + ("" if (engine, unit) in tokens else " (assumed)"))
    return usd, f"{', '.join(why) or 'nothing sent'} at {model}'s price"


def _constant(condition: str | None) -> bool | None:
    """The value of an SQL condition that names no column ("false", "1 = 1"); None for any other."""
    import duckdb

    if not condition:
        return None
    con = duckdb.connect()
    try:
        value = con.execute(f"SELECT ({condition})::BOOLEAN").fetchall()[0][0]
    except duckdb.Error:
        return None
    finally:
        con.close()
    return None if value is None else bool(value)


# A dataset's lines and pages as its first engine ($e) read them (its latest reading of each page),
# before any later stage re-read a line or the whole page: what a new cascade would route. The
# columns are those of best_lines and best_text, which `when` and `pages_when` are written over.
_FIRST_PAGES = """
    SELECT * FROM pages WHERE engine = $e AND status = 'ok' AND reread_of IS NULL
    QUALIFY row_number() OVER (PARTITION BY page_id ORDER BY processed_at DESC, run_id DESC, batch_id DESC) = 1"""
FIRST_LINES = f"""
    SELECT e.page_id, e.reading_order AS line_no, e.text, e.confidence, e.engine, e.config_hash, false AS reread,
           e.text AS base_text, e.confidence AS base_confidence, e.engine AS base_engine,
           e.config_hash AS base_config_hash, e.x0, e.y0, e.x1, e.y1, e.polygon, e.block_id, e.vertical
    FROM ({_FIRST_PAGES}) f JOIN elements e USING (page_id, engine, run_id, batch_id) WHERE e.level = 'line'"""
FIRST_TEXT = f"""
    WITH l AS (SELECT page_id, string_agg(text, chr(10) ORDER BY line_no) AS text, count(*) AS n_lines,
                      avg(confidence) AS mean_confidence FROM ({FIRST_LINES}) GROUP BY page_id)
    SELECT f.page_id, f.status, f.engine, f.config_hash, coalesce(l.text, f.text) AS text, [f.engine] AS engines,
           coalesce(l.n_lines, 0) AS n_lines, 0 AS lines_reread, coalesce(l.mean_confidence, f.mean_confidence)
           AS mean_confidence, f.error_kind, f.error, f.image_uri
    FROM ({_FIRST_PAGES}) f LEFT JOIN l USING (page_id)"""
