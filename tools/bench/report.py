"""What `just bench` writes: its chart, and rows and sections of BENCHMARKS.md replaced in place."""

from __future__ import annotations

import re
from pathlib import Path

REAL_HEADING = "## Engines on real pages"


SEARCH_HEADING = "## Search"


CLI_HEADING = "## Against the Tesseract CLI"


CLI_REAL_HEADING = "## Against the Tesseract CLI, on real pages"


ARCHIVES_HEADING = "## Archives"


def chart(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r[0].split(":")[0][:40] for r in rows]
    ratios = [float(r[3].split()[0]) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.2))
    ax.barh(labels[::-1], ratios[::-1], color="#4c72b0")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("baseline time / measured time (1.0 = as fast as the baseline)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _replace_row(target: Path, prefix: str, row: str, add_before: str | None = None) -> int:
    """Replace the table row of BENCHMARKS.md that starts with `prefix` (with `add_before`, a row
    missing is added above the row starting so); the rest stays as it was."""
    lines = target.read_text().splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    if not at and add_before:
        before = [i for i, line in enumerate(lines) if line.startswith(add_before)]
        if before:
            lines.insert(before[0], row)
            at = [before[0]]
    if not at:
        raise SystemExit(f"{target} has no row starting {prefix!r}: run the whole `just bench` first")
    lines[at[0]] = row
    target.write_text("\n".join(lines) + "\n")
    print(row)
    return 0


def _write_section(target: Path, heading: str, section: list[str]) -> int:
    """Replace one `## ` section of BENCHMARKS.md in place (or add it); the rest stays as it was."""
    text = target.read_text() if target.is_file() else "# Benchmarks\n"
    if heading in text:
        before, _, after = text.partition(heading)
        rest = after.split("\n## ", 1)
        text = before + "\n".join(section) + ("\n## " + rest[1] if len(rest) > 1 else "\n")
    else:
        text = text.rstrip() + "\n\n" + "\n".join(section) + "\n"
    target.write_text(text)
    print("\n".join(section))
    return 0


HEADROOM = 1.15  # peak_mb is written with this margin over the peak measured


def write_costs(path: Path, figures: dict[str, list[tuple[float, float, float]]], made_by: str) -> None:
    """Write each engine's measured load, seconds per page (mean over the sets measured) and peak
    memory into its `engines:` entry of costs.yaml, in place: the file's comments, prices and
    other entries stay as they were, and a line says which run the figures come from."""
    text = path.read_text()
    for engine, runs in figures.items():
        load = sum(r[0] for r in runs) / len(runs)
        per_page = sum(r[1] for r in runs) / len(runs)
        peak = max(r[2] for r in runs)
        values = {"cpu_s_per_page": f"{per_page:.2f}", "load_s": f"{load:.2f}", "peak_mb": f"{peak * HEADROOM:.0f}"}
        block = re.search(rf"(?m)^  {re.escape(engine)}:\n((?:    .*\n)+)", text)
        if block is None:
            continue  # an engine costs.yaml does not price: nothing to write
        body = block.group(1)
        for key, value in values.items():
            note = (f"measured: {', '.join(f'{r[1]:.2f}' for r in runs)} s/page over {len(runs)} sets" if key == "cpu_s_per_page"
                    else f"{peak:.0f} MB measured, with headroom" if key == "peak_mb"
                    else "a fresh process: imports, model, the first page's warm-up")
            body = re.sub(rf"(?m)^    {key}: .*$", f"    {key}: {value}".ljust(31) + f"# {note}", body, count=1)
        text = text[:block.start(1)] + body + text[block.end(1):]
    marker = "# engines: measured"
    line = f"# engines: measured by `{made_by}` (real pages, one core, side by side).\n"
    text = re.sub(r"(?m)^# engines: measured by `.*\n", "", text)
    text = text.replace(marker, line + marker, 1) if marker in text else line + text
    path.write_text(text)
