"""`just eval`: score OCR output against transcripts, engines side by side.

    python -m etl.evaluate [sets=FOLDER] [manifest=M truth=T] [generated=N]
                           [engine=tesseract,tesseract:layout=page] [out=eval-out]
    python -m etl.evaluate out=DATASET truth=T [engine=tesseract]     (score an existing dataset)

Scoring: both sides are normalised (Unicode NFKC, case folded, punctuation dropped,
whitespace collapsed; each can be turned off). Units are words, or characters for
text without spaces (Japanese, Chinese). Word recall = matched transcript units
/ transcript units; precision = matched / output units (multisets, so order
does not matter: loose transcripts rarely follow the page's reading order).
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

from etl.errors import UsageError

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
        "matched": matched,
        "unit": "char" if by_char else "word",
    }


@dataclass
class EvalSet:
    name: str
    manifest: str
    truth: str
    lang: str = "en"  # ISO code: each engine maps it to its own (Tesseract: eng, jpn, ...)


def load_truth(path: str | Path) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            out[str(rec["page_id"])] = rec.get("text") or ""
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
    name, *opts = spec.split(":")
    return spec, name, dict(o.split("=", 1) for o in opts)


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


def score_pages(truth: dict[str, str], texts: dict[str, str | None], norm: Norm) -> pl.DataFrame:
    rows = []
    for pid, ref in truth.items():
        hyp = texts.get(pid)
        s = score(ref, hyp or "", norm)
        rows.append({"page_id": pid, "read": hyp is not None, **s, "truth": ref, "output": hyp or ""})
    return pl.DataFrame(rows)


def run(sets: list[EvalSet], specs: list[str], out_dir: Path, norm: Norm, limit: int | None = None,
        lines: dict[str, list[pl.DataFrame]] | None = None) -> pl.DataFrame:
    """Each spec over each set; per-page scores. `lines` collects every line's check by spec."""
    from etl.api import run_ocr

    results = []
    for es in sets:
        truth = load_truth(es.truth)
        for spec in specs:
            label, engine, opts = parse_spec(spec)
            opts.setdefault("lang", es.lang)
            try:
                summary = run_ocr(es.manifest, engine=engine, out=str(out_dir / "data" / es.name), limit=limit, **opts)
            except UsageError as exc:
                print(f"{es.name} / {label}: skipped: {exc}", file=sys.stderr)
                continue
            texts = page_texts(str(out_dir / "data" / es.name), engine, summary.config_hash)
            per_page = score_pages({k: v for k, v in truth.items() if k in texts or limit is None}, texts, norm)
            if lines is not None:
                lines.setdefault(label, []).append(
                    line_checks(str(out_dir / "data" / es.name), engine, summary.config_hash, truth, norm))
            results.append(per_page.with_columns(pl.lit(es.name).alias("set"), pl.lit(label).alias("engine"),
                                                 pl.lit(summary.page_seconds / max(1, summary.processed)).alias("s_per_page")))
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


TRUSTED_ACCURACY = 0.95  # the recommended threshold: lines at or above it are read right this often


def calibration(lines: pl.DataFrame, bins: int = 10) -> tuple[pl.DataFrame, float | None]:
    """Reliability table (per confidence bin: lines, share read right, mean confidence) and the
    recommended cascade threshold: the lowest t at which the lines of confidence >= t are read
    right TRUSTED_ACCURACY of the time (None when no t reaches it)."""
    table = (lines.with_columns((pl.col("confidence").clip(0, 0.999999) * bins).floor().alias("bin"))
             .group_by("bin").agg(pl.len().alias("lines"), pl.col("right").mean().alias("accuracy"),
                                  pl.col("confidence").mean().alias("mean_confidence"))
             .sort("bin").with_columns((pl.col("bin") / bins).alias("from"), ((pl.col("bin") + 1) / bins).alias("to")))
    best = None
    for t in [i / 100 for i in range(100)]:
        trusted = lines.filter(pl.col("confidence") >= t)
        if trusted.height and trusted["right"].mean() >= TRUSTED_ACCURACY:
            best = t
            break
    return table, best


def calibration_markdown(lines_by_engine: dict[str, pl.DataFrame]) -> str:
    out = ["## Calibrated confidence", "",
           "A line is *read right* when all its words (characters, for Japanese) are in the page's transcript. "
           f"Recommended cascade threshold: the lowest confidence t at which lines of confidence >= t are read "
           f"right {TRUSTED_ACCURACY:.0%} of the time; lines below it are the ones a cascade re-reads.", "",
           "| engine | lines | read right | ECE | threshold | share of lines under it | right, under it |",
           "|---|---|---|---|---|---|---|"]
    for engine, lines in lines_by_engine.items():
        if lines.is_empty():
            continue
        table, t = calibration(lines)
        ece = float(((table["accuracy"] - table["mean_confidence"]).abs() * table["lines"]).sum() / lines.height)
        under = lines.filter(pl.col("confidence") < t) if t is not None else lines.head(0)
        right_under = f"{under['right'].mean():.2f}" if under.height else "-"
        out.append(f"| `{engine}` | {lines.height} | {lines['right'].mean():.3f} | {ece:.3f} | "
                   f"{'none' if t is None else f'{t:.2f}'} | {under.height / lines.height:.2f} | {right_under} |")
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
        table, _ = calibration(lines)
        ax.plot(table["mean_confidence"], table["accuracy"], "o-", label=f"{engine} ({lines.height} lines)")
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
            pl.col("cer").mean().alias("cer"),
            (~pl.col("read")).sum().alias("failed"),
            pl.col("s_per_page").first(),
        )
        .sort("set", "engine")
    )


def markdown(summary: pl.DataFrame, per_page: pl.DataFrame, worst: int = 5) -> str:
    lines = ["| set | engine | pages | unit | recall | recall (micro) | precision | CER | failed | s/page |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.iter_rows(named=True):
        lines.append(f"| {r['set']} | `{r['engine']}` | {r['pages']} | {r['unit']} | {r['recall']:.3f} | "
                     f"{r['recall_micro']:.3f} | {r['precision']:.3f} | {r['cer']:.3f} | {r['failed']} | "
                     f"{r['s_per_page'] or 0:.2f} |")
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
            score_pages(load_truth(kv["truth"]), page_texts(kv["out"], parse_spec(s)[1]), norm)
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
        checks: dict[str, list[pl.DataFrame]] = {}
        per_page = run(sets, specs, report_dir, norm, int(kv["limit"]) if kv.get("limit") else None, checks)
    summary = summarize(per_page)
    report_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(summary, per_page)
    if "truth" not in kv or "manifest" in kv:
        by_engine = {label: pl.concat(parts) for label, parts in checks.items()}
        md += "\n" + calibration_markdown(by_engine)
        reliability_chart(by_engine, report_dir / "reliability.png")
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
