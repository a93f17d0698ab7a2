"""What a cascade sends on to its later engines by default: the doubtful lines (`when`) and pages
(`pages_when`), as SQL over the `best_lines` and `best_text` views. Pure text: no I/O here."""

from __future__ import annotations

from typing import Any

from engines.lang import is_japanese

# Lines under its engine's threshold go to the next stage: each the recommendation of `just eval`'s
# calibration on the real pages of ../shared/eval (README, "Calibrated confidence").
CALIBRATED_THRESHOLD = {"tesseract": 0.69, "ppocrv6": 0.92, "easyocr": 0.61, "paddleocr": 0.88}
UNCALIBRATED_THRESHOLD = 0.5


def default_when(engine: str, lang: str | None = None, threshold: float | None = None) -> str:
    """The `when` a cascade whose first engine is `engine` (reading `lang`) uses unless given one:
    lines under the engine's calibrated confidence (or `threshold`), and lines whose text looks
    misread (`etl.dataset.lexicon`). A line a later stage read without a confidence (an API model) stays read."""
    t = CALIBRATED_THRESHOLD.get(engine, UNCALIBRATED_THRESHOLD) if threshold is None else threshold
    lang = str(lang or "auto").replace("'", "''")
    return f"confidence IS NOT NULL AND (confidence < {t} OR doubtful_text(text, '{lang}'))"


def default_routes(engine: str, lang: str | None, when: str | None = None,
                   pages_when: str | None = None) -> tuple[str, str | None]:
    """The `when` and `pages_when` of a cascade given neither or one. For a first engine reading
    Japanese, with neither: the pages under its calibrated threshold (or with no line) go whole, no
    line alone (`when="false"`). Otherwise `when` defaults to `default_when`, `pages_when` to none."""
    # Where `just eval` finds the first engine's gap to be text never found (a missed bubble is no
    # line to re-read) and the doubtful pages to hold it (README, "Calibrated confidence"): Japanese.
    if when is None and pages_when is None and is_japanese(lang):
        return "false", doubtful_pages_below(CALIBRATED_THRESHOLD.get(engine, UNCALIBRATED_THRESHOLD))
    return when or default_when(engine, lang), pages_when


def doubtful_pages_below(threshold: float) -> str:
    """A `pages_when`: pages whose lines' mean confidence is under `threshold`, and pages where the
    engine found no line at all (NULL mean): a page read as empty is the likeliest to hold text missed."""
    return f"coalesce(mean_confidence, 0) < {threshold}"


def stage_lang(engine: str, options: dict[str, Any]) -> str | None:
    """The `lang` option a cascade gives its first engine (`ENGINE.lang=` or a plain `lang=`)."""
    return options.get(f"{engine}.lang", options.get("lang"))


