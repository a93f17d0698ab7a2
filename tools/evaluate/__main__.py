"""`just eval`: score OCR output against transcripts, engines side by side.

    python -m tools.evaluate [sets=FOLDER] [manifest=M truth=T] [generated=N]
                           [engine=tesseract,tesseract:layout=page] [out=eval-out]
                           [standin=ENGINE|none]  (its cascades also through the pipeline; default ppocrv6)
    python -m tools.evaluate out=DATASET truth=T [engine=tesseract]     (score an existing dataset)

Scoring: both sides are normalised (Unicode NFKC, case folded, punctuation dropped,
whitespace collapsed; each can be turned off). Units are words, or characters for
text without spaces (Japanese, Chinese). Word recall = matched transcript units
/ transcript units; precision = matched / output units (multisets, so order
does not matter: loose transcripts rarely follow the page's reading order).
Precision is also given against all the page's legible text (the transcript's
`text` plus its `sfx` and `other_text`, where it keeps signs and sound effects apart).
CER = Levenshtein distance / transcript length (rapidfuzz), order-sensitive.
A page without a successful row scores 0 recall."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

from engines.base import DEFAULT_ENGINE
from etl.errors import UsageError
from tools.evaluate.metrics import Norm
from tools.evaluate.reports import chart, line_reports, markdown, summarize
from tools.evaluate.runner import EvalSet, discover, load_truth, page_texts, parse_spec, run, score_pages

# The keys `just eval` takes (checked: a typo is an error, not a silent default).
KEYS = {"sets", "manifest", "truth", "generated", "engine", "out", "report", "limit", "lang", "seed", "standin",
        "nfkc", "fold_case", "strip_punct"}


def main(argv: list[str]) -> int:
    from engines.args import parse_bool
    from etl.cli import parse_kv
    from tools.synthetic import write_pages

    kv = parse_kv(argv)
    if unknown := sorted(set(kv) - KEYS):
        raise UsageError(f"eval: unknown key(s) {', '.join(unknown)}; it takes {', '.join(sorted(KEYS))}")
    norm = Norm(**{k: parse_bool(kv[k]) for k in ("nfkc", "fold_case", "strip_punct") if k in kv})
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
