"""Languages and scripts, in one place: which characters are kana and CJK ideographs (text written
without spaces), which are Latin, Greek or Cyrillic, and the ISO 639-1 code of each name a user may
give for a language (ISO 639-2/T as Tesseract names its data, common names)."""

from __future__ import annotations

import re

# Character-class bodies (for use inside [...]).
KANA = "\u3040-\u30ff\uff66-\uff9f"  # hiragana, katakana (with ー and ・), half-width katakana
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs, extension A, compatibility ideographs
CJK = KANA + HAN  # written without spaces: scored, searched and joined by character

CJK_CHAR = re.compile(f"[{CJK}]")
KANA_CHAR = re.compile(f"[{KANA}]")
KANA_ONLY = re.compile(f"^[{KANA}]+$")
LATIN_CHAR = re.compile(r"[A-Za-z\u00c0-\u024f]")
GREEK_CYRILLIC_CHAR = re.compile(r"[\u0370-\u03ff\u0400-\u04ff]")

# Names users give -> ISO 639-1. Codes not listed are taken as given (lower-cased).
ISO_639_1 = {
    "eng": "en", "english": "en",
    "jpn": "ja", "jpn_vert": "ja", "japan": "ja", "japanese": "ja", "jp": "ja",
    "chi_sim": "zh", "chi_tra": "zh", "ch": "zh", "chinese": "zh", "zh-cn": "zh", "zh_cn": "zh",
    "kor": "ko", "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "spa": "es", "ita": "it", "por": "pt",
    "nld": "nl", "dut": "nl", "rus": "ru", "ukr": "uk", "bul": "bg", "srp": "sr", "mkd": "mk", "bel": "be",
    "ell": "el", "gre": "el",
}
GREEK_CYRILLIC_LANGS = {"el", "ru", "uk", "bg", "sr", "mk", "be"}  # languages written in those scripts
WITHOUT_SPACES = {"ja", "zh"}  # languages whose lines join without a space


def iso(lang: str | None) -> str:
    """The ISO 639-1 code of one language name (`jpn`, `Japanese`, `ja` -> `ja`); `auto` stays `auto`."""
    code = str(lang or "auto").strip().lower()
    return ISO_639_1.get(code, code)


def parts(lang: str | None) -> list[str]:
    """The ISO 639-1 codes of a `lang` option: Tesseract's `eng+jpn` is two; unset is `auto`."""
    return [iso(p) for p in str(lang or "auto").split("+") if p.strip()] or ["auto"]


def is_japanese(lang: str | None) -> bool:
    return iso(lang) == "ja"


def has_cjk(text: str) -> bool:
    return bool(CJK_CHAR.search(text))


def is_cjk(char: str) -> bool:
    return bool(CJK_CHAR.match(char))
