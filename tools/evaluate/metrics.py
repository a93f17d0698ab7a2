"""How a reading is scored against a transcript: normalisation, word or character units, recall,
precision and CER, and the calibration of line confidences (the threshold a cascade uses)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass

import polars as pl
from rapidfuzz.distance import Levenshtein

from engines.lang import CJK_CHAR

APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u2032"})


CJK = CJK_CHAR  # text written without spaces is scored by character


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
