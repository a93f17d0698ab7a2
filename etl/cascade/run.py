"""Cascades: the first engine reads every page, each later one only the lines still doubtful.

    just ocr manifest=M cascade=tesseract,ppocrv6,qwen when="confidence < 0.8" max_cost_usd=5

Stage 1 is a plain run. With `pages_when` (SQL over `best_text`, e.g. "mean_confidence < 0.9"),
each later stage first reads the pages it calls doubtful whole. Then it picks, from the `best_lines` view, the lines of stage 1's
reading for which `when` (SQL over `best_lines`: confidence, text, engine, x0..y1, vertical, ...)
holds, and re-reads only those (`Engine.read_lines`: crops of the boxes; one small request a line
for an API model). Every stage's rows stay in the dataset under its engine; `best_lines` and
`best_text` give each page's best reading, later stages over earlier. A line whose best reading has
no confidence (an API model's answer) is never doubtful again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import polars as pl

from etl.cost.prices import model_price
from etl.run.job import Reread, RunSummary, run_ocr
from etl.run.options import RunOptions
from etl.errors import ConfigError
from etl.dataset.manifest import ID, URI, load_manifest, pages_from
from etl.dataset.views import condition
from etl.cascade.routes import (  # noqa: F401  (the cascade's routes, re-exported for its callers)
    CALIBRATED_THRESHOLD, UNCALIBRATED_THRESHOLD, default_routes, default_when, doubtful_pages_below, stage_lang)

LINE_COLUMNS = ("line_no", "x0", "y0", "x1", "y1", "polygon", "block_id", "vertical")


@dataclass
class StagePlan:
    """What a later stage is about to send (the `on_plan` event, before it sends anything): pages
    whole, lines as crops, their estimated cost where its model has a price, and the budget left."""

    stage: int  # 1 for the second engine
    engine: str
    pages: int
    lines: int
    cost_usd: float | None
    basis: str
    budget_left_usd: float | None


@dataclass
class CascadeSummary:
    stages: list[RunSummary] = field(default_factory=list)
    when: str = ""
    pages_when: str | None = None
    budget_usd: float | None = None

    @property
    def all_ok(self) -> bool:
        return all(s.all_ok for s in self.stages)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd or 0.0 for s in self.stages)


def split_options(engines: list[str], raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Options per stage: `ENGINE.key=value` for one stage, a plain `key=value` for every stage whose
    engine has that option. ConfigError for an option no stage has."""
    import dataclasses

    from engines import get_engine

    fields = [{f.name for f in dataclasses.fields(get_engine(e).Options)} | set(get_engine(e).RENAMED) for e in engines]
    per_stage: list[dict[str, Any]] = [{} for _ in engines]
    for key, value in raw.items():
        name, dot, option = key.partition(".")
        if dot:
            if name not in engines:
                raise ConfigError(f"option {key}: {name!r} is not a stage of the cascade ({', '.join(engines)})")
            per_stage[engines.index(name)][option] = value  # the engine's parser names a bad option
            continue
        takers = [i for i, f in enumerate(fields) if key in f]
        if not takers:
            raise ConfigError(f"no engine of the cascade ({', '.join(engines)}) has an option {key!r}")
        for i in takers:
            per_stage[i][key] = value
    return per_stage


def _over_reading(out: str, reading: str, page_ids: pl.Series, sql: str, condition: str, what: str) -> pl.DataFrame:
    """`sql` (with $engine, $cfg and the table _cascade_pages of `page_ids`) over dataset `out`, for
    `reading` ("ENGINE:CONFIG_HASH"); a ConfigError naming `what` when the user's `condition` is bad."""
    import duckdb

    from etl.dataset.views import connect

    engine, _, cfg = reading.partition(":")
    con = connect(out)
    try:
        con.register("_cascade_pages", pl.DataFrame({ID: page_ids.cast(pl.String)}).to_arrow())
        return con.sql(sql, params={"engine": engine, "cfg": cfg}).pl()
    except duckdb.Error as exc:
        raise ConfigError(f"{what}={condition!r} is not a condition over "
                          f"{'best_lines' if what == 'when' else 'best_text'}: {exc}") from None
    finally:
        con.close()


def _doubtful(when: str) -> str:
    """The lines of the reading $engine:$cfg (with a box, to crop) whose best reading so far meets `when`."""
    return ("SELECT * FROM best_lines WHERE base_engine = $engine AND base_config_hash = $cfg AND x0 IS NOT NULL "
            f"AND ({condition(when, 'when')})")


def doubtful_lines(out: str, reading: str, when: str, page_ids: pl.Series) -> tuple[pl.DataFrame, dict[str, list[dict]]]:
    """The pages and lines of `reading` ("ENGINE:CONFIG_HASH") among `page_ids` whose best reading
    so far meets `when`: (page_id/image_uri frame, page id -> lines)."""
    lines = _over_reading(
        out, reading, page_ids,
        # `when` sees best_lines' columns alone (best_text has a `text` too)
        f"SELECT l.page_id, t.image_uri, {', '.join('l.' + c for c in LINE_COLUMNS)} FROM ({_doubtful(when)}) l "
        "JOIN best_text t USING (page_id) JOIN _cascade_pages USING (page_id) ORDER BY l.page_id, l.line_no",
        when, "when")
    chosen: dict[str, list[dict]] = {}
    for row in lines.iter_rows(named=True):
        chosen.setdefault(str(row[ID]), []).append({c: row[c] for c in LINE_COLUMNS})
    return lines.select(ID, URI).unique(ID, keep="first", maintain_order=True), chosen


def doubtful_pages(out: str, reading: str, pages_when: str, page_ids: pl.Series) -> pl.DataFrame:
    """The pages (page_id, image_uri) among `page_ids` whose best reading is still `reading` and meets
    `pages_when` (SQL over best_text: mean_confidence, n_lines, lines_reread, text, ...)."""
    return _over_reading(
        out, reading, page_ids,
        "SELECT t.page_id, t.image_uri FROM best_text t JOIN _cascade_pages USING (page_id) "
        f"WHERE t.engine = $engine AND t.config_hash = $cfg AND ({condition(pages_when, 'pages_when')}) "
        "ORDER BY t.page_id",
        pages_when, "pages_when")


def run_cascade(stages: list[str], manifest: str | None = None, out: str | None = None, *,
                from_: str | None = None, where: str | None = None, when: str | None = None,
                pages_when: str | None = None, max_cost_usd: float | None = None,
                on_stage: Callable[[int, str, str], None] | None = None,
                on_plan: Callable[[StagePlan], None] | None = None, **options: Any) -> CascadeSummary:
    """Read `manifest` (or `from_`/`where`) with `stages[0]`, then re-read with each later stage the
    lines `when` calls doubtful; with `pages_when`, the pages it calls doubtful are read whole
    instead (their new reading is then the page's best). `max_cost_usd` caps the API stages'
    spend together; run options (batch, workers, limit, force, callbacks...) apply to every stage,
    engine options as `split_options` says. `on_plan` hears, before each later stage sends anything,
    what it will send and what that should cost (`StagePlan`). Rerun to resume: each stage skips
    what it has done."""
    if len(stages) < 2:
        raise ConfigError(f"a cascade needs two or more engines, e.g. cascade=tesseract,qwen (got {','.join(stages)!r})")
    if len(set(stages)) < len(stages):
        raise ConfigError(f"each engine appears once in a cascade: {','.join(stages)}")
    callbacks = {k: options.pop(k) for k in ("on_start", "on_warning", "on_batch") if k in options}
    run, engine_options = RunOptions.split(options)  # parsed and checked once, for every stage
    if run.manifest or run.cascade or run.engine != RunOptions().engine:
        raise ConfigError("a cascade's stages are its engines: give them as `stages`, the pages as `manifest`")

    def stage(budget_usd: float | None, first: bool = False) -> dict:
        src = {} if first else {"src": None}  # stage 1 reads src= itself (its problems become error rows)
        return {"run": run.model_copy(update={"max_cost_usd": budget_usd, **src}), **callbacks}
    per_stage = split_options(stages, engine_options)
    priced = [_priced(e, o) for e, o in zip(stages, per_stage)]
    if max_cost_usd is not None and not any(priced[1:]):
        raise ConfigError("max_cost_usd caps the API stages of a cascade, and none of its later stages has a "
                          "model with a price in costs.yaml")
    when, pages_when = default_routes(stages[0], stage_lang(stages[0], engine_options), when, pages_when)
    summary = CascadeSummary(when=when, pages_when=pages_when, budget_usd=max_cost_usd)
    if on_stage:
        on_stage(0, stages[0], "pages")
    # Read and checked once: stage 1 takes the frame, the later stages its page ids.
    if run.src is not None:
        from etl.dataset.sources import scan

        first = run_ocr(None, stages[0], out, **stage(max_cost_usd if priced[0] else None, first=True),
                        **per_stage[0])
        frame = scan(run.src).pages
    else:
        frame = load_manifest(manifest) if manifest is not None else pages_from(from_, where)
        first = run_ocr(frame, stages[0], out or from_, **stage(max_cost_usd if priced[0] else None), **per_stage[0])
    summary.stages.append(first)
    if run.limit:
        frame = frame.head(run.limit)
    reading = f"{stages[0]}:{first.config_hash}"
    def budget(k: int) -> float | None:
        return max(0.0, max_cost_usd - summary.cost_usd) if max_cost_usd is not None and priced[k] else None

    for k, engine in enumerate(stages[1:], start=1):
        whole = doubtful_pages(first.out, reading, pages_when, frame[ID]) if pages_when else frame.head(0)
        if on_plan:
            on_plan(_plan(k, engine, per_stage[k], first.out, reading, when, frame[ID], whole, budget(k),
                          run.force))
        if whole.height:
            if on_stage:
                on_stage(k, engine, "pages")
            summary.stages.append(run_ocr(whole, engine, first.out, **stage(budget(k)), **per_stage[k]))
        # Pages just read whole have a newer reading than stage 1's: their lines are not chosen.
        pages, lines = doubtful_lines(first.out, reading, when, frame[ID])
        if on_stage:
            on_stage(k, engine, "lines")
        summary.stages.append(run_ocr(None, engine, first.out, reread=Reread(of=reading, when=when, frame=pages,
                                                                             lines=lines),
                                      **stage(budget(k)), **per_stage[k]))
    return summary


def _plan(k: int, engine: str, raw: dict[str, Any], out: str, reading: str, when: str, page_ids: pl.Series,
          whole: pl.DataFrame, budget_left: float | None, force: bool) -> StagePlan:
    """Stage k's StagePlan: the pages `whole` it reads whole, and the lines `when` picks (counted,
    not fetched) on the other pages whose lines it has not re-read yet, priced as
    `just estimate` prices them, at the tokens a page and a line have cost in `out` so far."""
    from engines import get_engine
    from etl.dataset.layout import done_page_ids
    from etl.cost.estimate import api_cost, measured_tokens
    from etl.run.plan import config_hash
    from etl.dataset.views import connect

    options = get_engine(engine).parse_options(raw)
    # Pages read whole are no longer stage 1's best (doubtful_pages leaves them out); pages whose
    # lines this stage has re-read are what its run will skip as done (etl.run.job.run_ocr).
    ids = page_ids.cast(pl.String)
    ids = ids.filter(~ids.is_in(whole[ID].cast(pl.String).implode()))
    if not force:
        done = done_page_ids(out, engine, config_hash(engine, options, {"of": reading, "when": when}))
        ids = ids.filter(~ids.is_in(done.implode()))
    n_lines = int(_over_reading(out, reading, ids, f"SELECT count(*) AS n FROM ({_doubtful(when)}) "
                                "JOIN _cascade_pages USING (page_id)", when, "when")["n"][0])
    model = get_engine(engine).model(options)
    price = model_price(model)
    cost, basis = None, f"{engine} has no price in costs.yaml"
    if price is not None:
        con = connect(out)
        try:
            tokens = measured_tokens(con)
        finally:
            con.close()
        cost, basis = api_cost(engine, model, price, whole.height, n_lines, tokens)
    return StagePlan(k, engine, whole.height, n_lines, cost, basis, budget_left)


def _priced(engine: str, raw: dict[str, Any]) -> bool:
    from engines import get_engine

    cls = get_engine(engine)
    return model_price(cls.model(cls.parse_options(raw))) is not None
