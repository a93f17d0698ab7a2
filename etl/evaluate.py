"""`just eval`: score OCR output against transcripts, engines side by side.

    python -m etl.evaluate [sets=FOLDER] [manifest=M truth=T] [generated=N]
                           [engine=tesseract,tesseract:layout=page] [out=eval-out]
                           [standin=ENGINE|none]  (its cascades also through the pipeline; default ppocrv6)
    python -m etl.evaluate out=DATASET truth=T [engine=tesseract]     (score an existing dataset)

Scoring: both sides are normalised (Unicode NFKC, case folded, punctuation dropped,
whitespace collapsed; each can be turned off). Units are words, or characters for
text without spaces (Japanese, Chinese). Word recall = matched transcript units
/ transcript units; precision = matched / output units (multisets, so order
does not matter: loose transcripts rarely follow the page's reading order).
Precision is also given against all the page's legible text (the transcript's
`text` plus its `sfx` and `other_text`, where it keeps signs and sound effects apart).
CER = Levenshtein distance / transcript length (rapidfuzz), order-sensitive.
A page without a successful row scores 0 recall.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rapidfuzz.distance import Levenshtein

from engines.base import DEFAULT_ENGINE
from etl.errors import UsageError

APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u2032"})
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


@dataclass
class Norm:
    nfkc: bool = True
    fold_case: bool = True
    strip_punct: bool = True


def normalize(text: str, norm: Norm = Norm()) -> str:
    text = text or ""
    if norm.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if norm.fold_case:
        text = text.casefold()
    if norm.strip_punct:
        text = text.translate(APOSTROPHES)  # don’t, donʼt and don't are one word: dont
        text = "".join(" " if unicodedata.category(c)[0] in "PS" and c != "'" else c for c in text)
        text = text.replace("'", "")
    return " ".join(text.split())


def units(text: str, by_char: bool) -> list[str]:
    return [c for c in text if not c.isspace()] if by_char else text.split()


def score(truth: str, hyp: str, norm: Norm = Norm()) -> dict:
    t, h = normalize(truth, norm), normalize(hyp, norm)
    by_char = bool(CJK.search(t))
    tu, hu = Counter(units(t, by_char)), Counter(units(h, by_char))
    matched = sum((tu & hu).values())
    n_t, n_h = sum(tu.values()), sum(hu.values())
    return {
        "recall": matched / n_t if n_t else 1.0,
        "precision": matched / n_h if n_h else (1.0 if not n_t else 0.0),
        "cer": Levenshtein.distance(t, h) / max(1, len(t)),
        "units": n_t,
        "output_units": n_h,
        "matched": matched,
        "unit": "char" if by_char else "word",
    }


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
    from engines.base import parse_kv

    name, *opts = spec.split(":")
    return spec, name, parse_kv(opts)


def page_texts(out: str, engine: str, config_hash: str | None = None) -> dict[str, str | None]:
    """Latest successful text per page (None for pages with only errors)."""
    from etl.query import connect

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
    from etl.query import connect

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
    from etl.api import run_ocr

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
    from etl.query import connect

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


WINDOW = 0.05  # confidence band the break-even rule reads accuracy over
MIN_LINES = 10  # lines a band needs before it counts


def calibration(lines: pl.DataFrame, bins: int = 10) -> tuple[pl.DataFrame, float | None]:
    """Reliability table (per confidence bin: lines, share read right, mean confidence) and the
    recommended cascade threshold: the highest t at which lines of confidence just under t (the band
    [t - WINDOW, t)) are read right less than half the time, so re-reading the lines under t fixes
    more than it wastes (None when no band is below half)."""
    table = (lines.with_columns((pl.col("confidence").clip(0, 0.999999) * bins).floor().alias("bin"))
             .group_by("bin").agg(pl.len().alias("lines"), pl.col("right").mean().alias("accuracy"),
                                  pl.col("confidence").mean().alias("mean_confidence"))
             .sort("bin").with_columns((pl.col("bin") / bins).alias("from"), ((pl.col("bin") + 1) / bins).alias("to")))
    best = None
    for t in [i / 100 for i in range(1, 101)]:
        band = lines.filter((pl.col("confidence") >= t - WINDOW) & (pl.col("confidence") < t))
        if band.height >= MIN_LINES and band["right"].mean() < 0.5:
            best = t
    return table, best


def oracle_cascade(out: str, engine: str, config_hash: str, truth: dict[str, str], threshold: float,
                   norm: Norm, page_threshold: float | None = None, lang: str = "auto",
                   lines_too: bool = True) -> pl.DataFrame:
    """What a cascade would read with an API that reads every line it is sent right: per page, the
    engine's lines in reading order; those the cascade's default `when` routes
    (`etl.cascade.default_when` at `threshold`) replaced by the transcript text their
    crop holds (`crop_truth`; a line like none is left as the engine read it). With
    `page_threshold`, a page whose mean line confidence is under it, or with no line, is sent whole
    (`etl.cascade.doubtful_pages_below`; all its lines count as sent) and comes back as its
    transcript; `lines_too=False` sends no other line (pages only: `when="false"`). Returns per page:
    lines, lines routed, whether the page was sent whole, matched units alone and after."""
    from etl.cascade import default_when
    from etl.query import connect

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
    `etl.standin.AnswerKeyServer`, which answers each line crop the engine sends with the transcript
    text the crop holds (`crop_truth`, or the line as read when it holds none) and each page with
    its transcript. Runs on a copy in `work` of this reading alone, over the pages it has (`from=`);
    the cascade's first stage finds them done. Per page, as `oracle_cascade`: lines, lines sent (a page's lines all count when it goes
    whole), matched units alone and after; and `unanswered`, the requests the key did not know (a
    crop or page not built as here: 0 unless the measure is broken), on the set's first row."""
    import shutil

    from engines import get_engine
    from engines.base import line_crop
    from etl import images, storage
    from etl.cascade import LINE_COLUMNS, default_when, doubtful_pages_below, run_cascade
    from etl.dataset import copy_reading
    from etl.manifest import ID, URI, load_manifest
    from etl.query import connect
    from etl.standin import AnswerKeyServer, image_key

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


# Sets whose transcripts hold all the visible text, by eye (../shared/eval/README.md); the others'
# hold text that is not on the page (xkcd's scene descriptions) or spell it apart (letter-spaced
# headings in the UNLV scans), a gap no reading of the page closes but the stand-in's whole page.
COMPLETE_SETS = ("real_more/",)
ROUTES = ("lines", "pages", "pages and lines")  # what a cascade sends on (cascade_markdown)


ORACLE_INTRO = (
    "The stand-in answers each line's crop with the transcript text the crop holds, and a whole page with "
    "its transcript (`oracle_cascade`): sending every page to it would read everything (recall 1.0), and "
    "*gap closed* is the share of the gap between the engine alone and that which the cascade closes. "
    "*Lines*: the lines of the default `when` go (confidence under the engine's threshold, or text that "
    "looks misread: `doubtful_text`); text the engine did not find at all stays missed. *Pages*: the pages "
    "whose mean line confidence is under the threshold, and those where the engine found no line, go whole "
    "(`pages_when=\"coalesce(mean_confidence, 0) < t\"` `when=false`: `etl.cascade.doubtful_pages_below`). "
    "*Pages and lines*: both. *Transcripts*: all sets, or those transcribed by eye with all the visible "
    "text (`real_more/`).")
STANDIN_INTRO = (
    "The same cascades run by the pipeline itself (`standin_cascade`): `cascade=ENGINE,gemma` over a copy of "
    "the engine's reading, the API stage's requests served over HTTP by `etl.standin.AnswerKeyServer`, which "
    "answers each line crop and each page the engine sends as the oracle above does; recall from the "
    "`best_text` view. *Unanswered*: requests the stand-in did not know (0 unless the measure is broken).")


def cascade_markdown(results: dict[tuple[str, str], tuple[float, pl.DataFrame]],
                     heading: str = "Cascade, with an API that reads every line it is sent right",
                     intro: str = ORACLE_INTRO) -> str:
    extra = "unanswered" in next(iter(results.values()))[1].columns if results else False
    out = [f"## {heading}", "", intro, "",
           "| engine | routes | transcripts | pages | unit | threshold | lines sent | pages sent whole | recall alone "
           "| recall, cascade | gap closed |" + (" unanswered |" if extra else ""),
           "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if extra else "")]
    for (label, route), (t, df) in results.items():
        df = df.sort("unit", descending=True, maintain_order=True)  # words, then characters
        groups = [("all", g) for _, g in df.group_by("unit", maintain_order=True)]
        groups += [("by eye, complete", g) for _, g in df.filter(pl.col("complete")).group_by("unit", maintain_order=True)]
        for which, g in groups:
            unit = g["unit"][0]
            alone, casc = g["matched_alone"].sum() / max(1, g["units"].sum()), g["matched_cascade"].sum() / max(1, g["units"].sum())
            gap = (casc - alone) / (1 - alone) if alone < 1 else 1.0
            out.append(f"| `{label}` | {route} | {which} | {g.height} | {unit} | {t:.2f} | "
                       f"{g['routed'].sum() / max(1, g['lines'].sum()):.2f} | {g['page_sent'].mean():.2f} | "
                       f"{alone:.3f} | {casc:.3f} | {gap:.2f} |" + (f" {g['unanswered'].sum()} |" if extra else ""))
    return "\n".join(out) + "\n"


def line_reports(readings: list[tuple], norm: Norm, report_dir: Path, standin: str | None = None) -> str:
    """The calibration table and reliability diagram, then the oracle cascade at each engine's
    recommended threshold, and for the reading labelled `standin` the same cascades through the
    pipeline (`standin_cascade`)."""
    checks: dict[str, list[pl.DataFrame]] = {}
    for label, out, engine, cfg, truth, _ in readings:
        checks.setdefault(label, []).append(line_checks(out, engine, cfg, truth, norm))
    by_engine = {label: pl.concat(parts) for label, parts in checks.items()}
    reliability_chart(by_engine, report_dir / "reliability.png")
    thresholds = {label: calibration(lines)[1] for label, lines in by_engine.items() if not lines.is_empty()}
    cascades: dict[tuple[str, str], list[pl.DataFrame]] = {}
    piped: dict[tuple[str, str], list[pl.DataFrame]] = {}
    for label, out, engine, cfg, truth, es in readings:
        t = thresholds.get(label)
        if t is None:
            continue
        complete = pl.lit(es.name.startswith(COMPLETE_SETS)).alias("complete")
        for route in ROUTES:
            cascades.setdefault((label, route), []).append(
                oracle_cascade(out, engine, cfg, truth, t, norm, page_threshold=None if route == "lines" else t,
                               lang=es.lang, lines_too=route != "pages").with_columns(complete))
            if label == standin:
                work = report_dir / "cascade" / route.replace(" ", "_") / es.name
                piped.setdefault((label, route), []).append(
                    standin_cascade(out, label, cfg, es, truth, t, route, norm, work).with_columns(complete))
    md = (calibration_markdown(by_engine) + "\n"
          + cascade_markdown({key: (thresholds[key[0]], pl.concat(parts)) for key, parts in cascades.items()}))
    if piped:
        md += "\n" + cascade_markdown({key: (thresholds[key[0]], pl.concat(parts)) for key, parts in piped.items()},
                                      "Cascade through the pipeline, with the stand-in API", STANDIN_INTRO)
    return md


def calibration_markdown(lines_by_engine: dict[str, pl.DataFrame]) -> str:
    out = ["## Calibrated confidence", "",
           "A line is *read right* when all its words (characters, for Japanese) are in the page's transcript. "
           f"Recommended cascade threshold: the highest confidence t at which the lines just under it (confidence in "
           f"[t - {WINDOW}, t), {MIN_LINES}+ lines) are read right less than half the time: re-reading the lines "
           "under t fixes more lines than it wastes requests on. *Wrong lines caught*: the share of all wrongly "
           "read lines that are under t.", "",
           "| engine | lines | read right | ECE | threshold | share of lines under it | right, under it | wrong lines caught |",
           "|---|---|---|---|---|---|---|---|"]
    for engine, lines in lines_by_engine.items():
        if lines.is_empty():
            continue
        table, t = calibration(lines)
        ece = float(((table["accuracy"] - table["mean_confidence"]).abs() * table["lines"]).sum() / lines.height)
        under = lines.filter(pl.col("confidence") < t) if t is not None else lines.head(0)
        right_under = f"{under['right'].mean():.2f}" if under.height else "-"
        wrong = int((~lines["right"]).sum())
        caught = f"{int((~under['right']).sum()) / wrong:.2f}" if wrong else "-"
        out.append(f"| `{engine}` | {lines.height} | {lines['right'].mean():.3f} | {ece:.3f} | "
                   f"{'none' if t is None else f'{t:.2f}'} | {under.height / lines.height:.2f} | {right_under} | {caught} |")
    return "\n".join(out) + "\n"


def reliability_chart(lines_by_engine: dict[str, pl.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for engine, lines in lines_by_engine.items():
        if lines.is_empty():
            continue
        table, t = calibration(lines, bins=20)
        ax.plot(table["mean_confidence"], table["accuracy"], "o-",
                label=f"{engine} ({lines.height} lines; threshold {t if t is not None else '-'})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("share of lines read right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Reliability of line confidence (real pages)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(per_page: pl.DataFrame) -> pl.DataFrame:
    return (
        per_page.group_by("set", "engine", maintain_order=True)
        .agg(
            pl.len().alias("pages"),
            pl.col("unit").first(),
            pl.col("recall").mean().alias("recall"),
            (pl.col("matched").sum() / pl.col("units").sum()).alias("recall_micro"),
            pl.col("precision").mean().alias("precision"),
            (pl.col("matched").sum() / pl.col("output_units").sum()).alias("precision_micro"),
            (pl.col("matched_visible").sum() / pl.col("output_units").sum()).alias("precision_visible"),
            pl.col("cer").mean().alias("cer"),
            (~pl.col("read")).sum().alias("failed"),
            pl.col("s_per_page").first(),
        )
        .sort("set", "engine")
    )


def markdown(summary: pl.DataFrame, per_page: pl.DataFrame, worst: int = 5) -> str:
    lines = ["| set | engine | pages | unit | recall | recall (micro) | precision | precision (micro) | "
             "precision (micro, all visible text) | CER | failed | s/page |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.iter_rows(named=True):
        lines.append(f"| {r['set']} | `{r['engine']}` | {r['pages']} | {r['unit']} | {r['recall']:.3f} | "
                     f"{r['recall_micro']:.3f} | {r['precision']:.3f} | {r['precision_micro'] or 0:.3f} | "
                     f"{r['precision_visible'] or 0:.3f} | {r['cer']:.3f} | {r['failed']} | {r['s_per_page'] or 0:.2f} |")
    pooled = (per_page.group_by("engine", "unit", maintain_order=True)
              .agg(pl.col("set").n_unique().alias("sets"), pl.len().alias("pages"),
                   (pl.col("matched").sum() / pl.col("units").sum()).alias("recall"),
                   (pl.col("matched").sum() / pl.col("output_units").sum()).alias("precision"),
                   (pl.col("matched_visible").sum() / pl.col("output_units").sum()).alias("visible"))
              .sort("unit", "engine"))
    lines += ["", "All the sets above pooled (micro: every unit of every page counts once):", "",
              "| engine | unit | sets | pages | recall | precision | precision (all visible text) |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| `{r['engine']}` | {r['unit']} | {r['sets']} | {r['pages']} | {r['recall']:.3f} | "
              f"{r['precision'] or 0:.3f} | {r['visible'] or 0:.3f} |" for r in pooled.iter_rows(named=True)]
    lines += ["", f"Worst pages (lowest recall, {worst} per engine):", "",
              "| set | engine | page | recall | CER | output starts |", "|---|---|---|---|---|---|"]
    for (eng,), grp in per_page.sort("recall").group_by("engine", maintain_order=True):
        for r in grp.head(worst).iter_rows(named=True):
            start = " ".join(r["output"].split())[:50].replace("|", "/")
            lines.append(f"| {r['set']} | `{eng}` | {r['page_id']} | {r['recall']:.2f} | {r['cer']:.2f} | {start} |")
    return "\n".join(lines) + "\n"


def chart(summary: pl.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = summary["set"].unique(maintain_order=True).to_list()
    engines = summary["engine"].unique(maintain_order=True).to_list()
    width = 0.8 / max(1, len(engines))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(sets) * len(engines)), 4))
    for i, eng in enumerate(engines):
        vals = [summary.filter((pl.col("set") == s) & (pl.col("engine") == eng))["recall"].to_list() for s in sets]
        xs = [j + i * width for j in range(len(sets))]
        ax.bar(xs, [v[0] if v else 0 for v in vals], width, label=eng)
    ax.set_xticks([j + width * (len(engines) - 1) / 2 for j in range(len(sets))], sets)
    ax.set_ylabel("word recall")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("OCR word recall by set and engine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    from etl.cli import parse_kv
    from etl.synthetic import write_pages

    kv = parse_kv(argv)
    norm = Norm(**{k: kv[k].lower() in ("1", "true", "yes") for k in ("nfkc", "fold_case", "strip_punct") if k in kv})
    specs = [s for s in kv.get("engine", "tesseract,tesseract:layout=page").split(",") if s]
    if "truth" in kv and "manifest" not in kv and "out" in kv:  # score an existing dataset
        per_page = pl.concat([
            score_pages(load_truth(kv["truth"]), page_texts(kv["out"], parse_spec(s)[1]), norm,
                        load_truth(kv["truth"], visible=True))
            .with_columns(pl.lit("dataset").alias("set"), pl.lit(s).alias("engine"), pl.lit(None).alias("s_per_page"))
            for s in specs
        ])
        report_dir = Path(kv.get("report", "eval-out"))
    else:
        report_dir = Path(kv.get("out", "eval-out"))
        sets = discover(kv["sets"]) if kv.get("sets") else []
        if kv.get("manifest"):
            sets.append(EvalSet(Path(kv["manifest"]).parent.name or "manifest", kv["manifest"], kv["truth"],
                                kv.get("lang", "en")))
        if int(kv.get("generated", 0)):
            folder = Path(tempfile.mkdtemp(prefix="eval-generated-"))
            write_pages(folder, int(kv["generated"]), seed=int(kv.get("seed", 31000)), prefix="gen")
            sets.append(EvalSet("generated", str(folder / "manifest.csv"), str(folder / "truth.jsonl")))
        if not sets:
            raise UsageError("give sets=FOLDER, manifest=M truth=T, or generated=N")
        readings: list[tuple] = []
        per_page = run(sets, specs, report_dir, norm, int(kv["limit"]) if kv.get("limit") else None, readings)
    summary = summarize(per_page)
    report_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(summary, per_page)
    if "truth" not in kv or "manifest" in kv:
        standin = kv.get("standin", DEFAULT_ENGINE)
        md += "\n" + line_reports(readings, norm, report_dir, None if standin == "none" else standin)
    (report_dir / "REPORT.md").write_text("# OCR evaluation\n\n" + (__doc__.split("\n\n")[2]) + "\n\n" + md)
    per_page.drop("truth", "output").write_csv(report_dir / "pages.csv")
    chart(summary, report_dir / "recall.png")
    print(md)
    print(f"-> {report_dir}/REPORT.md, {report_dir}/recall.png, {report_dir}/reliability.png, {report_dir}/pages.csv")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
