"""Command line: `python -m etl.cli ocr|query|manifest key=value ...` (what the Justfile calls).

Exit codes: 0 every page read; 3 some pages failed (the summary shows the
rerun command); 2 unusable input or configuration (nothing was processed).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from engines.base import DEFAULT_ENGINE
from engines.args import parse_kv as _parse_kv
from etl.errors import UsageError
from etl.run.options import RunOptions

EXIT_OK, EXIT_PAGES_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 3, 2, 130

console = Console(stderr=True)
out_console = Console()

# Characters a terminal acts on instead of showing: C0 and C1 controls (ESC starts the sequences
# that move the cursor, set the title or write the clipboard) and the bidirectional overrides
# that reorder what is shown. Text from pages, models, manifests and errors is shown with these
# spelled out (`\x1b`), never sent raw. Newlines and tabs stay.
TERMINAL_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0)]} | {
    c: f"\\u{c:04x}" for c in [0x200e, 0x200f, *range(0x202a, 0x202f), *range(0x2066, 0x206a)]}


def shown(value) -> str:
    """`value` as text that is safe to print to a terminal (see TERMINAL_ESCAPES)."""
    return str(value).translate(TERMINAL_ESCAPES)


def warn(message: str) -> None:
    console.print(Text.assemble(("warning: ", "bold yellow"), shown(message)), soft_wrap=True)


def parse_kv(args: list[str]) -> dict[str, str]:
    try:
        return _parse_kv(args)
    except UsageError as exc:
        raise UsageError(f"{exc}\n{usage()}") from None


def cmd_ocr(kv: dict[str, str]) -> int:
    from etl.run.job import run_ocr

    if not kv.get("manifest") and not kv.get("from") and not kv.get("src"):
        raise UsageError(f"ocr needs src=COMICS (images, archives, PDFs, EPUBs, or a folder of them), manifest=PATH, "
                         f"or from=DATASET [where=\"SQL over its pages\"]\n{usage()}")
    key = kv.pop("api_key", None)
    if key:  # into this process's environment only: workers inherit it, payloads never carry it
        os.environ[kv.get("api_key_env") or "OPENROUTER_API_KEY"] = key
    run, engine_options = RunOptions.split(kv)  # typed and checked once (a ConfigError: exit 2)
    engine_options = {k: v for k, v in engine_options.items() if v != ""}
    live = console.is_terminal if run.progress is None else run.progress
    progress = RunProgress(live)
    callbacks = dict(on_start=progress.start, on_batch=progress.batch,
                     on_warning=warn)
    try:
        if run.cascade:
            return _cascade(run, engine_options, callbacks, progress, kv)
        if run.when or run.pages_when:
            raise UsageError("when= and pages_when= choose what a cascade's later engines re-read: give cascade=A,B too")
        stage = run.model_copy(update={"manifest": None, "progress": None, "show": None})
        summary = run_ocr(run.manifest, run.engine, run.out, run=stage, **engine_options, **callbacks)
    except KeyboardInterrupt:  # Ctrl-C: what is written stays; resume reads the rest
        progress.stop()
        console.print(f"interrupted: {progress.ok + progress.failed} pages written ({progress.ok} ok, "
                      f"{progress.failed} failed); rerun the same command to resume")
        return EXIT_INTERRUPTED
    finally:
        progress.stop()
    print_summary(summary, kv)
    print_text(summary, 5 if run.show is None else run.show)
    return EXIT_OK if summary.all_ok else EXIT_PAGES_FAILED


def _cascade(run: RunOptions, engine_options: dict, callbacks: dict, progress: "RunProgress", kv: dict) -> int:
    from etl.cascade.run import default_routes, run_cascade, stage_lang

    stages = [e.strip() for e in run.cascade.split(",") if e.strip()]
    if "engine" in run.model_fields_set:
        raise UsageError("give engine= or cascade=, not both (the cascade's first engine reads every page)")
    when, pages_when = default_routes(stages[0], stage_lang(stages[0], engine_options), run.when, run.pages_when)

    def on_stage(k: int, engine: str, what: str) -> None:
        progress.stop()
        what = ("every page" if k == 0 else f"whole the pages where {pages_when}" if what == "pages"
                else f"the lines of {stages[0]}'s reading where {when}")
        console.print(f"[bold]stage {k + 1}/{len(stages)}[/]: {engine} reads {what}")

    def on_plan(plan) -> None:  # before a later stage sends anything: what it will send, what it should cost
        progress.stop()
        cost = "" if plan.cost_usd is None else f", about ${plan.cost_usd:,.4f} ({plan.basis})"
        left = "" if plan.budget_left_usd is None else f"; budget left ${plan.budget_left_usd:,.4f}"
        console.print(f"stage {plan.stage + 1}/{len(stages)}: {plan.engine} will send {plan.pages:,} pages whole "
                      f"and {plan.lines:,} lines{cost}{left}", soft_wrap=True)

    shared = run.given("manifest", "out", "from_", "where", "when", "pages_when", "cascade", "max_cost_usd",
                       "progress", "show")
    result = run_cascade(stages, run.manifest, run.out, from_=run.from_, where=run.where, when=when,
                         pages_when=pages_when, max_cost_usd=run.max_cost_usd, on_stage=on_stage, on_plan=on_plan,
                         **shared, **engine_options, **callbacks)
    progress.stop()
    for s in result.stages:
        print_summary(s, kv)
    if result.budget_usd is not None:
        out_console.print(f"budget: ${result.cost_usd:,.4f} spent of ${result.budget_usd:,.4f}, "
                          f"${max(0.0, result.budget_usd - result.cost_usd):,.4f} left")
    print_text(result.stages[0], 5 if run.show is None else run.show, best=True)
    return EXIT_OK if result.all_ok else EXIT_PAGES_FAILED


class RunProgress:
    """What a run shows while it goes: a live bar on a terminal (pages done and failed, pages per
    second, time left, spend of API engines), else one plain line per batch (logs, CI, pipes)."""

    def __init__(self, live: bool):
        self.live, self.ok, self.failed, self.cost, self.task = live, 0, 0, None, None
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, disable=not live,
        )

    def start(self, s) -> None:
        console.print(
            f"[bold]{s.engine}[/] on {s.pages_total} pages: {s.skipped} already done, "
            f"{s.pages_total - s.skipped} to read in {s.batches} batches of <= {s.batch_size} "
            f"({s.backend}, {s.workers} workers) -> {s.out}"
        )
        self.total, self.t0 = s.pages_total - s.skipped, time.monotonic()
        self.ok, self.failed, self.cost = 0, 0, None
        self.task = self.bar.add_task("pages", total=self.total, status="")
        self.bar.start()

    def batch(self, result) -> None:
        for p in result.pages:
            if p["status"] in ("ok", "pending"):  # pending: left for a rerun on purpose (budget)
                self.ok += p["status"] == "ok"
            else:
                self.failed += 1
            if p.get("cost_usd") is not None:
                self.cost = (self.cost or 0.0) + p["cost_usd"]
        done, elapsed = self.ok + self.failed, max(1e-9, time.monotonic() - self.t0)
        rate = done / elapsed
        status = f"ok {self.ok} failed {self.failed} · {rate:.2f} pages/s" + (f" · ${self.cost:,.4f}" if self.cost is not None else "")
        self.bar.update(self.task, advance=len(result.pages), status=status)
        if not self.live:
            left = (self.total - done) / rate if rate and done < self.total else 0.0
            n = len(result.pages)
            console.print(f"batch {result.batch_id}: {n} page{'s' if n != 1 else ''}; {done}/{self.total} done, {status}, "
                          f"{elapsed:.0f} s, about {left:.0f} s left", soft_wrap=True, highlight=False)

    def stop(self) -> None:
        self.bar.stop()


def print_text(s, n: int, lines: int = 6, width: int = 100, best: bool = False) -> None:
    """The text of the first `n` pages (by page id) read with this run's engine and options (`best`:
    their best reading, a cascade's lines re-read by its later engines included)."""
    if n <= 0 or not s.ok + s.skipped:
        return
    from etl.dataset.views import connect

    view = "best_text" if best else "page_text"
    try:
        con = connect(s.out, on_warning=lambda w: None)
        rows = con.execute(f"select page_id, text from {view} where engine = ? and config_hash = ? "
                           "order by page_id limit ?", [s.engine, s.config_hash, n]).fetchall()
        con.close()
    except Exception as exc:  # a preview must never turn a finished run into a failure
        console.print(Text(shown(f"(no text preview: {type(exc).__name__}: {exc})")))
        return
    table = Table(title=f"text of {len(rows)} pages (show=N for more, show=0 for none)", title_justify="left",
                  show_lines=True)
    table.add_column("page_id", no_wrap=True)
    table.add_column("text")
    for pid, text in rows:
        body = [t for t in (text or "").splitlines() if t.strip()]
        more = f"\n… {len(body) - lines} more line{'s' if len(body) - lines > 1 else ''}" if len(body) > lines else ""
        table.add_row(Text(shown(pid)), Text(shown("\n".join(t[:width] for t in body[:lines]) + more)))
    out_console.print(table)


def print_summary(s, kv: dict[str, str]) -> None:
    table = Table(title=f"run {s.run_id}", show_header=False, title_justify="left")
    table.add_row("engine", f"{s.engine} ({s.engine_version or 'not started'}), config {s.config_hash}")
    pending = f", [yellow]{s.pending} pending[/] (budget spent)" if s.pending else ""
    source = f"in {s.volumes} volume{'s' if s.volumes != 1 else ''}" if s.volumes else "in manifest"
    table.add_row("pages", f"{s.pages_total} {'with doubtful lines' if s.reread_of else source}: "
                  f"[green]{s.ok} ok[/], [{'red' if s.failed else 'green'}]{s.failed} failed[/]{pending}, "
                  f"{s.skipped} skipped (already done)")
    if s.reread_of:
        table.add_row("lines", f"{s.lines} lines of {s.reread_of} re-read")
    rate = f", {s.pages_per_s:.2f} pages/s" if s.processed else ""
    retried = f", {s.calls_retried} calls retried" if s.calls_retried else ""
    table.add_row("time", f"{s.elapsed_s:.1f} s{rate}, {s.batches} batches of <= {s.batch_size}, "
                  f"{s.workers} workers on {s.backend}{retried}")
    if s.max_peak_rss_mb:
        table.add_row("memory", f"peak {s.max_peak_rss_mb:.0f} MB per worker")
    if s.prompt_tokens or s.completion_tokens:
        cost = f", estimated ${s.cost_usd:,.4f}" if s.cost_usd is not None else ", no price for this model in costs.yaml"
        table.add_row("tokens", f"{s.prompt_tokens:,} prompt + {s.completion_tokens:,} completion{cost}")
    elif s.processed:
        table.add_row("cost", _cost_line(s))
    if s.budget_usd is not None:
        table.add_row("budget", f"${s.cost_usd or 0:,.4f} spent of max_cost_usd={s.budget_usd:g}, "
                      f"${max(0.0, s.budget_usd - (s.cost_usd or 0)):,.4f} left"
                      + (f"; {s.pending} pages pending: rerun with a higher max_cost_usd= to read them" if s.pending else ""))
    table.add_row("output", s.out)
    if s.failed:
        kinds = ", ".join(f"{k}: {n}" for k, n in s.error_kinds.most_common())
        table.add_row("errors", kinds + (f" ({s.failed_batches} batches failed after retries)" if s.failed_batches else ""))
        if s.unrecorded:
            table.add_row("", f"{s.unrecorded} failed pages have no error row: the output storage failed too; "
                          "the rerun below reads them")
        for ex in s.examples[:3]:
            table.add_row("", Text(shown(f"{ex['page_id']}: {ex['error']}")))
        rerun = " ".join(shlex.quote(f"{k}={v}") for k, v in kv.items() if k != "force")
        table.add_row("rerun", f"just ocr {rerun}   (retries only the failed pages)")
    table.add_row("look", f"just query out={shlex.quote(s.out)} sql=\"select page_id, left(text, 60) from page_text\"")
    out_console.print(table)


def _cost_line(s) -> str:
    """Measured seconds per page, and what the chosen backend (or Lambda, for a local run) costs."""
    from etl.cost.estimate import estimate

    measured = f"{s.page_seconds / s.processed:.2f} s/page measured" if s.page_seconds else ""
    try:
        if s.backend == "localhost":
            e = estimate(s.ok, s.engine, "aws_lambda", workers=100)  # what the pages read would cost
            return f"{measured}; $0 here; the same pages on aws_lambda with 100 workers: {e.short()}"
        e = estimate(s.ok, s.engine, s.backend, workers=s.workers, batch=s.batch_size)
        return f"{measured}; estimated ${e.cost_usd:,.4f} on {s.backend} (costs.yaml)"
    except UsageError as exc:
        return f"{measured}; no estimate: {exc}"


def cmd_estimate(kv: dict[str, str]) -> int:
    from engines import get_engine
    from etl.cost.estimate import estimate
    from etl.dataset.manifest import load_manifest

    if kv.get("pages"):
        pages = int(kv["pages"])
    elif kv.get("manifest"):
        pages = load_manifest(kv["manifest"]).height
    else:
        raise UsageError(f"estimate needs manifest=PATH or pages=N\n{usage()}")
    args = (kv.get("backend", "aws_lambda"), int(kv.get("workers", 100)),
            int(kv["batch"]) if kv.get("batch") else None, int(kv["memory"]) if kv.get("memory") else None)
    if kv.get("cascade"):
        from etl.cascade.run import default_routes, stage_lang
        from etl.cascade.estimate import estimate_cascade

        stages = [e.strip() for e in kv["cascade"].split(",") if e.strip()]
        when, pages_when = default_routes(stages[0], stage_lang(stages[0], kv), kv.get("when") or None,
                                          kv.get("pages_when") or None)
        e = estimate_cascade(pages, stages, when, kv.get("out") or None, *args, pages_when=pages_when)
    elif get_engine(engine := kv.get("engine", DEFAULT_ENGINE)).model():  # an API model
        from etl.cost.estimate import estimate_api

        e = estimate_api(pages, engine, kv.get("model") or None, kv.get("out") or None)
    else:
        e = estimate(pages, engine, *args)
    out_console.print(e.describe(), soft_wrap=True)
    return EXIT_OK


def cmd_query(kv: dict[str, str]) -> int:
    from etl.dataset.views import SQL_DIR, connect

    out = kv.get("out")
    if not out or not (kv.get("sql") or kv.get("file")):
        raise UsageError(f"query needs out=PATH and sql=\"...\" or file=PATH\n{usage()}")
    from etl.dataset.views import sql_file

    if kv.get("sql"):
        sql = kv["sql"]
    elif (path := sql_file(kv["file"])).is_file():
        sql = path.read_text()
    else:
        raise UsageError(f"no SQL file {kv['file']} (bundled: {', '.join(sorted(p.name for p in SQL_DIR.glob('*.sql')))})")
    from etl.dataset import storage

    fs, path = storage.url_to_fs(out)
    if not fs.exists(path):
        raise UsageError(f"no dataset at out={out}: nothing has been written there yet")
    con = connect(out, on_warning=warn)
    try:
        rel = con.sql(sql)
        if rel is None:
            return EXIT_OK
        df = rel.pl()
    except Exception as exc:
        import duckdb

        if isinstance(exc, duckdb.Error):
            raise UsageError(f"SQL error: {exc}") from None
        raise
    finally:
        con.close()
    import polars as pl

    controls, spelled = [chr(c) for c in TERMINAL_ESCAPES], list(TERMINAL_ESCAPES.values())
    df = df.with_columns(pl.col(pl.String).str.replace_many(controls, spelled))
    with pl.Config(tbl_rows=int(kv.get("rows", 50)), fmt_str_lengths=int(kv.get("width", 80)), tbl_width_chars=200):
        print(df)
    return EXIT_OK


def cmd_search(kv: dict[str, str]) -> int:
    from etl.read.search import search

    if not kv.get("out") or not kv.get("q"):
        raise UsageError(f"search needs out=PATH and q=\"words to find\"\n{usage()}")
    from etl.dataset import storage

    fs, path = storage.url_to_fs(kv["out"])
    if not fs.exists(path):
        raise UsageError(f"no dataset at out={kv['out']}: nothing has been written there yet")
    hits = search(kv["out"], kv["q"], limit=int(kv.get("limit", 10)), engine=kv.get("engine") or None,
                  on_warning=warn)
    if hits.is_empty():
        console.print(f"no line matches {kv['q']!r}")
        return EXIT_OK
    table = Table(title=f"{hits.height} best lines for {kv['q']!r}", title_justify="left")
    for col in ("page_id", "engine", "score", "line", "box (x0, y0, x1, y1)"):
        table.add_column(col, no_wrap=col != "line")
    for r in hits.iter_rows(named=True):
        box = "" if r["x0"] is None else f"{r['x0']:.0f}, {r['y0']:.0f}, {r['x1']:.0f}, {r['y1']:.0f}"
        table.add_row(Text(shown(r["page_id"])), r["engine"], f"{r['score']:.2f}", Text(shown(r["text"])), box)
    out_console.print(table)
    return EXIT_OK


def cmd_export(kv: dict[str, str]) -> int:
    from etl.read.export import FORMATS, export

    if not kv.get("out") or not kv.get("format") or not kv.get("dest"):
        raise UsageError(f"export needs out=DATASET format={'|'.join(FORMATS)} dest=FOLDER_OR_PREFIX\n{usage()}")
    s = export(kv["out"], kv["format"], kv["dest"], engine=kv.get("engine") or None, title=kv.get("title") or None,
               on_warning=warn)
    console.print(f"{s.pages} pages -> {len(s.files)} {s.format} file(s) under {kv['dest']}")
    return EXIT_OK


def cmd_embed(kv: dict[str, str]) -> int:
    from etl.read.embed import HASHED_MODEL, embed_pages

    if not kv.get("out"):
        raise UsageError(f"embed needs out=DATASET\n{usage()}")
    n = embed_pages(kv["out"], engine=kv.get("engine") or None, on_warning=warn)
    console.print(f"{n} page vectors ({HASHED_MODEL}) -> {kv['out']}/embeddings; nearest pages: "
                  f"just query out={kv['out']} file=sql/join_embeddings.sql")
    return EXIT_OK


def cmd_manifest(kv: dict[str, str]) -> int:
    from etl.dataset.manifest import build_manifest

    if not kv.get("src") or not kv.get("out"):
        raise UsageError(f"manifest needs src=FOLDER_OR_PREFIX and out=FILE\n{usage()}")
    warnings: list[str] = []
    df = build_manifest(kv["src"], kv["out"], warnings)
    for w in warnings:
        warn(w)
    volumes = df["container"].n_unique()
    console.print(f"{df.height} pages in {volumes} volume{'s' if volumes != 1 else ''} -> {kv['out']}")
    return EXIT_OK


def _runtime(kv: dict[str, str], action: str) -> int:
    """`lithops runtime build|deploy` with this project's defaults."""
    import subprocess

    from etl.cost.prices import load_costs

    backend = kv.get("backend", "aws_lambda")
    name = kv.get("name", "comic-ocr-cpu:0.1.0")
    cmd = [sys.executable, "-m", "lithops.scripts.cli", "runtime", action, "-b", backend]
    if kv.get("config") or Path("lithops.yaml").is_file():
        cmd += ["-c", kv.get("config", "lithops.yaml")]
    if action == "build":
        cmd += ["-f", kv.get("file", "runtimes/cpu/Dockerfile")]
    else:
        memory = kv.get("memory") or str(load_costs()["engines"][kv.get("engine", DEFAULT_ENGINE)]["memory_mb"])
        cmd += ["--memory", memory]
    console.print(" ".join(cmd), soft_wrap=True)
    return subprocess.call(cmd + [name])


def cmd_engines(kv: dict[str, str]) -> int:
    """Every method with its options (type, default, help), from the engines' own Options."""
    from engines import available, get_engine
    from engines.args import option_help

    for name in [kv["engine"]] if kv.get("engine") else available():
        try:
            cls = get_engine(name)
        except UsageError as exc:  # its packages are not installed: say so, list the others
            out_console.print(f"[bold]{name}[/]: {exc}", soft_wrap=True)
            continue
        table = Table(title=name, title_justify="left")
        for col in ("option", "type", "default", "help"):
            table.add_column(col, overflow="fold")
        for o in option_help(cls.Options):
            table.add_row(o.name, o.type, "" if o.default is None else repr(o.default), o.help)
        out_console.print(table)
    return EXIT_OK


@dataclass(frozen=True)
class Command:
    """A command of the CLI: what it runs, the keys it takes (None: a run's, checked by RunOptions and
    the engines' Options) and its usage line."""

    run: Callable[[dict[str, str]], int]
    keys: frozenset[str] | None
    usage: str


def _keys(*names: str) -> frozenset[str]:
    return frozenset(names)


COMMANDS: dict[str, Command] = {
    "ocr": Command(cmd_ocr, None,
                   "ocr (manifest=PATH | from=DATASET [where=SQL]) [engine=ppocrv6] [out=out] [RUN OPTION=...] "
                   "[ENGINE OPTION=...] | cascade=A,B[,C] [when=SQL] [pages_when=SQL]   (ocr help: every option)"),
    "engines": Command(cmd_engines, _keys("engine"), "engines [engine=NAME]   (every method and its options)"),
    "query": Command(cmd_query, _keys("out", "sql", "file", "rows", "width"),
                     "query out=PATH (sql=\"...\" | file=sql/NAME.sql) [rows=50] [width=80]"),
    "search": Command(cmd_search, _keys("out", "q", "engine", "limit"),
                      "search out=PATH q=\"words or 日本語\" [engine=NAME] [limit=10]"),
    "embed": Command(cmd_embed, _keys("out", "engine"),
                     "embed out=PATH [engine=NAME]   (page vectors for sql/join_embeddings.sql)"),
    "export": Command(cmd_export, _keys("out", "format", "dest", "engine", "title"),
                      "export out=PATH format=mokuro|alto|hocr|coco|jsonl dest=FOLDER [engine=NAME[:CONFIG_HASH]] "
                      "[title=SERIES]"),
    "manifest": Command(cmd_manifest, _keys("src", "out"),
                        "manifest src=COMICS out=FILE.csv|.parquet|.jsonl (COMICS: images, archives, PDFs, EPUBs, or a folder of them)"),
    "estimate": Command(cmd_estimate, _keys("manifest", "pages", "engine", "backend", "workers", "batch",
                                                           "memory", "model", "out", "cascade", "when", "pages_when",
                                                           "lang"),
                        "estimate (manifest=PATH | pages=N) [engine=ppocrv6] [backend=aws_lambda] [workers=100] [batch=N] "
                        "[memory=MB] [model=ID] [out=DATASET already read: measures tokens, lines, shares routed] "
                        "[cascade=A,B[,C] [when=SQL] [pages_when=SQL] [lang=ja]]"),
    "runtime-build": Command(lambda kv: _runtime(kv, "build"), _keys("backend", "file", "name", "config"),
                             "runtime-build [backend=aws_lambda] [file=runtimes/cpu/Dockerfile] "
                             "[name=comic-ocr-cpu:0.1.0] [config=lithops.yaml]"),
    "runtime-deploy": Command(lambda kv: _runtime(kv, "deploy"), _keys("backend", "name", "memory", "engine", "config"),
                              "runtime-deploy [backend=aws_lambda] [name=comic-ocr-cpu:0.1.0] [memory=MB] [engine=NAME]"),
}


def usage() -> str:
    return "usage:\n" + "\n".join(f"  {c.usage}" for c in COMMANDS.values())


def ocr_help() -> str:
    """`just ocr help`: the run options from their one definition, then where the engines' are."""
    lines = ["just ocr KEY=VALUE ...   run options (every other key is an option of the engine):"]
    for name, f in RunOptions.model_fields.items():
        default = "" if f.default in (None, "") else f" (default: {f.default})"
        lines.append(f"  {f.alias or name:<13} {f.description}{default}")
    lines.append("engine options: just engines [engine=NAME]; in a cascade, ENGINE.option=value")
    return "\n".join(lines)


def check_keys(command: str, kv: dict[str, str]) -> None:
    """UsageError for a key the command does not take: a typo is refused before any work."""
    keys = COMMANDS[command].keys
    unknown = sorted(set(kv) - keys) if keys is not None else []
    if unknown:
        raise UsageError(f"{command}: unknown key(s) {', '.join(unknown)}; it takes {', '.join(sorted(keys))}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        return EXIT_OK if argv and argv[0] in ("-h", "--help", "help") else EXIT_USAGE
    if argv[0] == "ocr" and argv[1:2] in (["help"], ["-h"], ["--help"]):
        print(ocr_help())
        return EXIT_OK
    try:
        kv = parse_kv(argv[1:])
        check_keys(argv[0], kv)
        return COMMANDS[argv[0]].run(kv)
    except UsageError as exc:
        console.print(Text.assemble(("error: ", "bold red"), shown(exc)), soft_wrap=True)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
