"""What a cascade costs before it runs: stage 1 as `etl.cost.estimate`, each later stage priced on
the share of lines (or pages) its routes send, measured on a sample dataset where one is given."""

from __future__ import annotations

import math
from dataclasses import dataclass

from etl.cascade.routes import default_when
from etl.cost.estimate import Estimate, api_cost, estimate, measured_tokens
from etl.cost.prices import load_costs


# What a cascade's estimate assumes without a sample (a dataset already read by its first engine):
DEFAULT_LINES_PER_PAGE = 15
DEFAULT_SHARE = 0.2  # of the lines a stage gets that it leaves doubtful for the next
DEFAULT_PAGE_SHARE = 0.2  # of the pages that `pages_when` sends whole


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
        from etl.dataset.views import condition, connect

        when = condition(when, "when") if when else None
        pages_when = condition(pages_when, "pages_when") if pages_when else None
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
        model = cls.model(None)
        price = (costs.get("models") or {}).get(model) if model else None
        if price is not None:
            usd, why = api_cost(engine, model, price, whole, lines, tokens)
        else:  # a local engine reading crops: costed as pages, a crop at most a page
            e = estimate(max(1, math.ceil(whole + lines / max(1.0, lines_per_page))), engine, backend, workers, None,
                         None, costs)
            usd, why = e.cost_usd, f"whole pages and crops costed as {e.pages:,} pages on {backend}"
        rows.append({"engine": engine, "pages": whole, "lines": lines, "usd": usd, "basis": why})
    return CascadeEstimate(first, rows, lines_per_page, basis)


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
