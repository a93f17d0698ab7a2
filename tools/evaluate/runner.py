"""What `just eval` runs: the evaluation sets it finds, the engines over them through the pipeline,
each page scored, the lines checked, and the cascades measured (in Python and through the stand-in)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from etl.errors import UsageError
from tools.evaluate.metrics import CJK, Norm, normalize, score, units


@dataclass
class EvalSet:
    name: str
    manifest: str
    truth: str
    lang: str = "en"  # ISO code: each engine maps it to its own (Tesseract: eng, jpn, ...)


def load_truth(path: str | Path, visible: bool = False) -> dict[str, str]:
    """page id -> transcript `text`. With `visible`, everything legible on the page: `text` plus the
    sound effects (`sfx`) and signs, plates and page numbers (`other_text`) that transcripts keep
    apart (real_more's convention), for precision: a sign read right is not a false word."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            text = rec.get("text") or ""
            if visible:
                text = "\n".join([text, *(rec.get("other_text") or []), *(rec.get("sfx") or [])])
            out[str(rec["page_id"])] = text
    return out


def discover(folder: str | Path) -> list[EvalSet]:
    """Every folder below `folder` (two levels at most: `real_more/blackjack_ja`) holding
    manifest.csv and ground_truth.jsonl (or truth.jsonl), named by its path below `folder`."""
    root = Path(folder)
    sets = []
    for d in sorted([*root.glob("*/"), *root.glob("*/*/")]):
        truth = next((d / n for n in ("ground_truth.jsonl", "truth.jsonl") if (d / n).is_file()), None)
        if d.is_dir() and (d / "manifest.csv").is_file() and truth:
            first = json.loads(truth.read_text(encoding="utf-8").splitlines()[0])
            sets.append(EvalSet(d.relative_to(root).as_posix(), str(d / "manifest.csv"), str(truth),
                                first.get("lang", "en")))
    return sets


def parse_spec(spec: str) -> tuple[str, str, dict]:
    """'tesseract:layout=page:psm=4' -> (label, engine, options)."""
    from engines.args import parse_kv

    name, *opts = spec.split(":")
    return spec, name, parse_kv(opts)


def page_texts(out: str, engine: str, config_hash: str | None = None) -> dict[str, str | None]:
    """Latest successful text per page (None for pages with only errors)."""
    from etl.dataset.views import connect

    con = connect(out)
    where = "engine = $engine" + (" and config_hash = $hash" if config_hash else "")
    params = {"engine": engine, **({"hash": config_hash} if config_hash else {})}
    rows = con.execute(
        f"""select page_id, arg_max(text, processed_at) filter (status = 'ok') as text
            from raw_pages where {where} group by page_id""", params
    ).fetchall()
    con.close()
    return dict(rows)


def seconds_per_page(out: str, engine: str, config_hash: str) -> float | None:
    """Mean seconds a page took to read (workers' timings in the page rows), so a resumed
    evaluation reports what the reading cost, not the zero of pages it skipped."""
    from etl.dataset.views import connect

    con = connect(out)
    try:
        ms = con.execute("select avg(duration_ms) from pages where engine = ? and config_hash = ? and status = 'ok' "
                         "and reread_of is null", [engine, config_hash]).fetchall()[0][0]
    finally:
        con.close()
    return None if ms is None else ms / 1000


def score_pages(truth: dict[str, str], texts: dict[str, str | None], norm: Norm,
                visible: dict[str, str] | None = None) -> pl.DataFrame:
    """Per page: recall, precision and CER against `truth`; `precision_visible` and
    `matched_visible` against all the page's legible text (`visible`, default `truth`)."""
    rows = []
    for pid, ref in truth.items():
        hyp = texts.get(pid)
        s = score(ref, hyp or "", norm)
        v = score((visible or {}).get(pid, ref), hyp or "", norm)
        rows.append({"page_id": pid, "read": hyp is not None, **s,
                     "precision_visible": v["precision"], "matched_visible": v["matched"], "truth": ref, "output": hyp or ""})
    return pl.DataFrame(rows)


def run(sets: list[EvalSet], specs: list[str], out_dir: Path, norm: Norm, limit: int | None = None,
        readings: list[tuple] | None = None) -> pl.DataFrame:
    """Each spec over each set; per-page scores. `readings` collects (spec, dataset, engine,
    config hash, transcripts, set) of each reading, for the line-level reports."""
    from etl.run.job import run_ocr

    results = []
    for es in sets:
        truth, visible = load_truth(es.truth), load_truth(es.truth, visible=True)
        for spec in specs:
            label, engine, opts = parse_spec(spec)
            opts.setdefault("lang", es.lang)
            out = str(out_dir / "data" / es.name)
            try:
                summary = run_ocr(es.manifest, engine=engine, out=out, limit=limit, **opts)
            except UsageError as exc:
                print(f"{es.name} / {label}: skipped: {exc}", file=sys.stderr)
                continue
            texts = page_texts(out, engine, summary.config_hash)
            per_page = score_pages({k: v for k, v in truth.items() if k in texts or limit is None}, texts, norm, visible)
            if readings is not None:
                readings.append((label, out, engine, summary.config_hash, truth, es))
            results.append(per_page.with_columns(pl.lit(es.name).alias("set"), pl.lit(label).alias("engine"),
                                                 pl.lit(seconds_per_page(out, engine, summary.config_hash)).alias("s_per_page")))
    if not results:
        raise UsageError("nothing was evaluated")
    return pl.concat(results, how="diagonal_relaxed")


def line_checks(out: str, engine: str, config_hash: str, truth: dict[str, str], norm: Norm) -> pl.DataFrame:
    """Every line the engine read, with its confidence and whether it was read right: all its words
    (characters, for CJK) are in the page's transcript. What a cascade's threshold acts on."""
    from etl.dataset.views import connect

    con = connect(out)
    lines = con.execute("select page_id, text, confidence from elements where engine = ? and config_hash = ? "
                        "and level = 'line' and confidence is not null", [engine, config_hash]).fetchall()
    con.close()
    rows, pages = [], {}
    for pid, text, conf in lines:
        if pid not in truth:
            continue
        if pid not in pages:
            t = normalize(truth[pid], norm)
            pages[pid] = (Counter(units(t, bool(CJK.search(t)))), bool(CJK.search(t)))
        have, by_char = pages[pid]
        got = Counter(units(normalize(text, norm), by_char))
        if got:
            rows.append({"page_id": pid, "confidence": float(conf), "right": not (got - have)})
    return pl.DataFrame(rows, schema={"page_id": pl.String, "confidence": pl.Float64, "right": pl.Boolean})


def oracle_cascade(out: str, engine: str, config_hash: str, truth: dict[str, str], threshold: float,
                   norm: Norm, page_threshold: float | None = None, lang: str = "auto",
                   lines_too: bool = True) -> pl.DataFrame:
    """What a cascade would read with an API that reads every line it is sent right: per page, the
    engine's lines in reading order; those the cascade's default `when` routes
    (`etl.cascade.run.default_when` at `threshold`) replaced by the transcript text their
    crop holds (`crop_truth`; a line like none is left as the engine read it). With
    `page_threshold`, a page whose mean line confidence is under it, or with no line, is sent whole
    (`etl.cascade.run.doubtful_pages_below`; all its lines count as sent) and comes back as its
    transcript; `lines_too=False` sends no other line (pages only: `when="false"`). Returns per page:
    lines, lines routed, whether the page was sent whole, matched units alone and after."""
    from etl.cascade.run import default_when
    from etl.dataset.views import connect

    con = connect(out)
    rows = con.execute(f"select page_id, text, confidence, coalesce({default_when(engine, lang, threshold)}, false) "
                       "from elements where engine = ? and config_hash = ? and level = 'line' "
                       "order by page_id, reading_order", [engine, config_hash]).fetchall()
    con.close()
    by_page: dict[str, list[tuple[str, float | None, bool]]] = {}
    for pid, text, conf, doubtful in rows:
        by_page.setdefault(pid, []).append((text, conf, doubtful))
    out_rows = []
    for pid, ref in truth.items():
        lines = by_page.get(pid, [])
        true_lines = [normalize(t, norm) for t in ref.splitlines() if normalize(t, norm)]
        got = [normalize(t, norm) for t, _, _ in lines]
        confs = [c for _, c, _ in lines if c is not None]
        mean = sum(confs) / len(confs) if confs else None
        alone = score(ref, "\n".join(got), norm)
        if page_threshold is not None and (mean is None or mean < page_threshold):
            out_rows.append({"page_id": pid, "lines": len(lines), "routed": len(lines), "page_sent": True, "units": alone["units"],
                             "matched_alone": alone["matched"], "matched_cascade": alone["units"], "unit": alone["unit"]})
            continue
        routed = [i for i, (_, _, doubtful) in enumerate(lines) if lines_too and doubtful]
        after = list(got)
        for i in routed:
            after[i] = crop_truth(got[i], true_lines) or got[i]
        fixed = score(ref, "\n".join(after), norm)
        out_rows.append({"page_id": pid, "lines": len(lines), "routed": len(routed), "page_sent": False, "units": alone["units"],
                         "matched_alone": alone["matched"], "matched_cascade": fixed["matched"], "unit": alone["unit"]})
    return pl.DataFrame(out_rows)


def standin_cascade(out: str, spec: str, config_hash: str, es: EvalSet, truth: dict[str, str], threshold: float,
                    route: str, norm: Norm, work: Path) -> pl.DataFrame:
    """`oracle_cascade`'s measure taken through the real pipeline: `just ocr cascade=ENGINE,gemma`
    (the same `when`, and `pages_when` for the page routes), its API stage served by
    `tools.standin.AnswerKeyServer`, which answers each line crop the engine sends with the transcript
    text the crop holds (`crop_truth`, or the line as read when it holds none) and each page with
    its transcript. Runs on a copy in `work` of this reading alone, over the pages it has (`from=`);
    the cascade's first stage finds them done. Per page, as `oracle_cascade`: lines, lines sent (a page's lines all count when it goes
    whole), matched units alone and after; and `unanswered`, the requests the key did not know (a
    crop or page not built as here: 0 unless the measure is broken), on the set's first row."""
    import shutil

    from engines import get_engine
    from engines.base import line_crop
    from etl.cascade.run import LINE_COLUMNS, default_when, doubtful_pages_below, run_cascade
    from etl.dataset import storage
    from etl.dataset.layout import copy_reading
    from etl.dataset.manifest import ID, URI, load_manifest
    from etl.dataset.views import connect
    from etl.run import images
    from tools.standin import AnswerKeyServer, image_key

    _, engine, opts = parse_spec(spec)
    opts.setdefault("lang", es.lang)
    shutil.rmtree(work, ignore_errors=True)
    copy_reading(out, str(work), engine, config_hash)
    con = connect(str(work))
    lines = con.sql("SELECT page_id, text, " + ", ".join(LINE_COLUMNS) + " FROM best_lines "
                    "WHERE base_engine = $e AND base_config_hash = $c ORDER BY page_id, line_no",
                    params={"e": engine, "c": config_hash}).pl()
    alone = dict(con.execute("SELECT page_id, text FROM best_text").fetchall())
    con.close()
    by_page: dict[str, list[dict]] = {}
    for row in lines.iter_rows(named=True):
        by_page.setdefault(row[ID], []).append(row)
    api_cls = get_engine("gemma")
    api = api_cls(api_cls.parse_options({"base_url": "http://127.0.0.1:9/v1"}))  # prepare() only, never asked
    answers, asked_for = {}, {}
    truth = {pid: ref for pid, ref in truth.items() if pid in alone}
    for pid, uri in load_manifest(es.manifest).select(ID, URI).iter_rows():
        if pid not in truth:
            continue
        image = images.decode(storage.read_bytes(uri))
        key = image_key(api.prepare(image)[0], crop=False)
        answers[key], asked_for[key] = truth[pid], (pid, None)
        true_lines = [normalize(t, norm) for t in truth[pid].splitlines() if normalize(t, norm)]
        for line in by_page.get(pid, []):
            if line["x0"] is None:
                continue
            key = image_key(api.prepare(line_crop(image, line), boxes=False)[0], crop=True)
            answers[key] = crop_truth(normalize(line["text"] or "", norm), true_lines) or line["text"] or "."
            asked_for[key] = (pid, line["line_no"])
    when = "false" if route == "pages" else default_when(engine, es.lang, threshold)
    with AnswerKeyServer(answers) as server:  # the pages of the copy (`eval limit=` read only some)
        summary = run_cascade([engine, "gemma"], None, str(work), from_=str(work), where="true", when=when,
                              pages_when=None if route == "lines" else doubtful_pages_below(threshold),
                              **{f"{engine}.{k}": v for k, v in opts.items()}, **{"gemma.base_url": server.base_url})
    if summary.stages[0].config_hash != config_hash:
        raise RuntimeError(f"the cascade read {es.name} again with other options ({spec})")
    sent: dict[str, set] = {}
    whole = set()
    for key in server.asked:
        if key in asked_for:
            pid, line_no = asked_for[key]
            sent.setdefault(pid, set()).update({ln["line_no"] for ln in by_page.get(pid, [])} if line_no is None else {line_no})
            whole |= {pid} if line_no is None else set()
    con = connect(str(work))
    after = dict(con.execute("SELECT page_id, text FROM best_text").fetchall())
    con.close()
    rows = []
    for pid, ref in truth.items():
        s0, s1 = score(ref, alone.get(pid) or "", norm), score(ref, after.get(pid) or "", norm)
        rows.append({"page_id": pid, "lines": len(by_page.get(pid, [])), "routed": len(sent.get(pid, ())), "page_sent": pid in whole,
                     "units": s0["units"], "matched_alone": s0["matched"], "matched_cascade": s1["matched"],
                     "unit": s0["unit"], "unanswered": 0})
    if server.unknown:  # the set's count, on its first row, so that sums over pages add up
        print(f"{es.name}: the stand-in did not know {server.unknown} of the requests it was sent", file=sys.stderr)
        rows[0]["unanswered"] = server.unknown
    return pl.DataFrame(rows)


def crop_truth(line: str, true_lines: list[str], min_score: float = 0.5) -> str | None:
    """The transcript text a line's crop holds, as a stand-in that reads it right would answer: the
    span of a transcript line closest to the line by edit distance (a transcript line is often a
    whole bubble, a read line one line of it), widened to whole words outside CJK. A line that is
    two pieces of the transcript (columns the engine read as one line, two lines of a bubble) gets
    both spans, in its order, when that is much closer than any one span (each piece within a
    quarter of its length of edits). None when no answer is within half the line's length of edits."""
    def piece(text: str) -> tuple[int, str] | None:  # held to a quarter: a short piece is close to too much
        return _closest_line_span(text, true_lines, max(min_score, 0.75))

    best = _closest_line_span(line, true_lines, min_score) if line else None
    if line and (best is None or best[0] >= max(2, 0.2 * len(line))):
        cjk = bool(CJK.search(line))
        shortest = 2 if cjk else 3  # a piece is a word at least: a letter alone is close to too much
        cuts = range(len(line)) if cjk else [i for i, ch in enumerate(line) if ch == " "]
        for cut in cuts:
            left, right = line[:cut].strip(), line[cut:].strip()
            if min(len(left), len(right)) < shortest:
                continue
            left, right = piece(left), piece(right)
            if left and right and left[0] + right[0] + 2 <= (best[0] if best else len(line)):
                best = (left[0] + right[0], ("" if cjk else " ").join((left[1], right[1])))
    return best[1] if best else None


def _closest_line_span(line: str, true_lines: list[str], min_score: float) -> tuple[int, str] | None:
    """(edit distance, text) of the transcript span closest to `line` (`crop_truth`'s one-span answer)."""
    from rapidfuzz import fuzz

    best = None
    read = line.replace(" ", "")
    for true in true_lines if read else ():
        # aligned without spaces: they are not characters in Japanese (punctuation became them:
        # "ま――す" is "ます"), and a letter-spaced heading ("s e p t e m b e r") is one word read
        kept = [i for i, ch in enumerate(true) if ch != " "]
        bare = "".join(true[i] for i in kept)
        if not bare or fuzz.partial_ratio(read, bare) < 50:  # cheap filter before the alignment
            continue
        dist, a, b = _closest_span(read, bare)
        if b > a and (best is None or dist < best[0]):
            best = (dist, true, kept[a], kept[b - 1] + 1)
    if best is None or best[0] > (1 - min_score) * len(read):
        return None
    dist, true, a, b = best
    if CJK.search(true):
        return dist, true[a:b].replace(" ", "")
    while a > 0 and true[a - 1] != " ":  # whole words
        a -= 1
    while b < len(true) and true[b] != " ":
        b += 1
    return dist, true[a:b].strip()


def _closest_span(s: str, t: str) -> tuple[int, int, int]:
    """(edit distance, start, end) of the substring of `t` closest to `s` (semi-global alignment:
    the whole of `s` against any span of `t`); of spans as close, the one that ends first: the
    stand-in answers no more than the crop may hold (a dash read as "ー" at the end of a column is
    not the next column's first character)."""
    prev = [(0, j) for j in range(len(t) + 1)]  # (distance, start of the span) per end column
    for i, ch in enumerate(s, 1):
        cur = [(i, 0)]
        for j, tj in enumerate(t, 1):
            sub = (prev[j - 1][0] + (ch != tj), prev[j - 1][1])
            cur.append(min(sub, (prev[j][0] + 1, prev[j][1]), (cur[j - 1][0] + 1, cur[j - 1][1])))
        prev = cur
    end = min(range(len(t) + 1), key=lambda j: prev[j][0])
    return prev[end][0], prev[end][1], end
