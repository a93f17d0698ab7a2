"""What `just eval` writes: REPORT.md's tables (engines side by side, worst pages, calibration,
cascades) and its charts."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tools.evaluate.metrics import MIN_LINES, WINDOW, Norm, calibration
from tools.evaluate.runner import line_checks, oracle_cascade, standin_cascade

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
    "(`pages_when=\"coalesce(mean_confidence, 0) < t\"` `when=false`: `etl.cascade.run.doubtful_pages_below`). "
    "*Pages and lines*: both. *Transcripts*: all sets, or those transcribed by eye with all the visible "
    "text (`real_more/`).")


STANDIN_INTRO = (
    "The same cascades run by the pipeline itself (`standin_cascade`): `cascade=ENGINE,gemma` over a copy of "
    "the engine's reading, the API stage's requests served over HTTP by `tools.standin.AnswerKeyServer`, which "
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
