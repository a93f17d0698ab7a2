"""Does a line's text look misread? The second doubt signal of a cascade, beside confidence.

An OCR engine is often sure of a line it read wrong: "HOUD" for "HOLD", "S0" for "SO", "MYCONTROL"
for "MY CONTROL", a Greek "ρ" among Latin letters. Confidence misses these lines; their text gives
them away. `doubtful_text` calls a line doubtful when
- it holds a Greek or Cyrillic letter and the language is written in neither (a misread "p", "N");
- a word runs letters and digits together ("S0", "L1KE"; "10PM", "3RD" are left alone);
- a word of two or more letters is in no lexicon of the line's language (Latin-script lines only;
  the word lists of `pyspellchecker`, which ship in its wheel: nothing is downloaded).
Names and rare words are flagged too: a cascade re-reads them, which costs a request, not a word.
It is registered as the SQL function `doubtful_text(text, lang)` in every connection of
`etl.dataset.views.connect`, so a cascade's `when` and `just query` can use it.
"""

from __future__ import annotations

import re

from engines.lang import GREEK_CYRILLIC_CHAR, GREEK_CYRILLIC_LANGS, iso
from engines.words import KANA_CJK, LATIN, lexicon
from engines.words import langs as _langs

# A letter then a digit: "S0", "L1KE", "B4" (digits then letters, "10PM", "3RD", "80S", are common).
_LETTER_DIGIT = re.compile(r"[^\W\d_]\d")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def doubtful_text(text: str | None, lang: str | None = "auto") -> bool:
    """Whether `text`, read as one line, looks misread (see the module docstring)."""
    if not text or not text.strip():
        return False
    if GREEK_CYRILLIC_CHAR.search(text) and not GREEK_CYRILLIC_LANGS.intersection(iso(x) for x in _langs(lang)):
        # a Greek "ρ" for a "p", a Cyrillic "И" for an "N"
        return True
    if KANA_CJK.search(text) or not LATIN.search(text):  # Japanese, Chinese, digits: nothing more to check
        return False
    if _LETTER_DIGIT.search(text):
        return True
    words = lexicon(lang)
    if words is None:
        return False
    for word in _WORD.findall(text.lower()):
        word = word.replace("’", "'")
        if len(word) >= 2 and word not in words and word.replace("'", "") not in words:
            return True
    return False


def register(con) -> None:
    """`doubtful_text(text, lang)` as a DuckDB function on `con` (a no-op where it is there)."""
    import duckdb

    try:
        con.create_function("doubtful_text", doubtful_text, ["VARCHAR", "VARCHAR"], "BOOLEAN",
                            null_handling="special", side_effects=False)
    except duckdb.NotImplementedException:  # already registered on this connection
        pass
