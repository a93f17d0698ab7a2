"""A language's word lists, and the two misreadings they mend: words run together, digits for letters.

OCR models read lettering a character at a time, and on comic lettering they often lose the narrow
space between two words ("RELATEDTO", "MYCONTROL", "NOTA") or read a letter as the digit it looks
like ("S0", "I5", "MA55", "PU2ZLES"). A reader sees the words; search and recall miss them.
`mend_lines` repairs a token only where the word list leaves no doubt:
- a token that is no word, made of a common word (the language's 100 most frequent) and another
  word, is split in two: the other part must be a word of four or more letters among the 20,000
  most frequent, or a common word itself; a lone letter only leads ("ATHREAD"), unless both parts
  are common ("NOTA"), and never an "I" or "l" trailing ("GOODI" is mostly "GOOD!");
- a token mixing letters and digits that is no word becomes the one frequent word its digits
  look like (0 o, 1 l or i, 2 z, 4 a, 5 s, 8 b); "10PM", "3RD", "B2B" and everything else stay;
- in English, a "|" standing alone before a word is an "I" (Tesseract reads a sans-serif I so).
Words spelt without their apostrophe (ARENT, CANT, IM), as lettering often has them, are words.
A token with an apostrophe, one joined to its neighbours by "-", "/", ".", "@", "&" (URLs, names,
a word hyphenated over two lines), and the first token of a line when it starts in lower case (the
second half of a hyphenated word) are left alone. Only Latin-script lines of a language whose word
list ships (pyspellchecker's: en, de, fr, es, it, pt, nl; nothing is downloaded) are touched.
Names that are no word stay as read: no part of a split may be a rare word.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache
from importlib.metadata import version as dist_version

from engines.lang import CJK_CHAR, LATIN_CHAR, iso

# Languages whose word list ships in pyspellchecker's wheel (ISO 639-1; any name engines.lang knows maps here).
WORD_LISTS = {"en", "de", "fr", "es", "it", "pt", "nl"}
DEFAULT_LANG = "en"  # for lang=auto (and unset): English, the Latin-script language most comics are read in
COMMON = 100  # the most frequent words of a language: "to", "my", "not", "a" (the parts a lost space leaves)
FREQUENT = 20_000  # a split's other part, or a digit-mended word, is among this many most frequent words
LOOKALIKES = {"0": "o", "1": "l", "2": "z", "4": "a", "5": "s", "8": "b"}
LOOKALIKES_TOO = ({}, {"1": "i"})  # a 1 is an l or an I
PIPE_FOR_I = re.compile(r"(?<!\S)\|(?= +[^\W\d_])")  # Tesseract's "|" for a sans-serif "I" before a word
NOT_TRAILING = {"i", "l"}  # a lone letter these look like, after a word, is more often a "!" or "|"

LATIN, KANA_CJK = LATIN_CHAR, CJK_CHAR
_JOINED = r"\w./@&#'’-"  # a token touching one of these belongs to something longer: left alone
_TOKEN = re.compile(rf"(?<![{_JOINED}])[^\W_]+(?![{_JOINED}])")
_DIGITS_FIRST = re.compile(r"\d+[^\W\d_]{1,2}")  # 10PM, 3RD, 80S


def langs(lang: str | None) -> list[str]:
    """The language codes of a `lang` option: Tesseract's "eng+jpn" is two; unset or auto is English."""
    codes = [c for c in (lang or "auto").lower().split("+") if c]
    return [DEFAULT_LANG if c == "auto" else c for c in codes] or [DEFAULT_LANG]


def _word_list(lang: str | None) -> str | None:
    code = iso(langs(lang)[0])
    return code if code in WORD_LISTS else None


def lexicon(lang: str | None) -> dict[str, int] | None:
    """The lowercase words of `lang`'s first language, each with its rank by frequency (None where
    no word list ships for it)."""
    code = _word_list(lang)
    return None if code is None else _ranks(code)


@lru_cache(maxsize=None)
def _ranks(code: str) -> dict[str, int]:  # word -> rank by frequency (0 = most frequent); one copy a list
    from spellchecker import SpellChecker

    counts = SpellChecker(language=code).word_frequency.dictionary
    ranks = {w: i for i, w in enumerate(sorted(counts, key=lambda w: (-counts[w], w)))}
    for word, rank in list(ranks.items()):  # lettering often drops the apostrophe: ARENT, IM, CANT
        if "'" in word:
            ranks.setdefault(word.replace("'", ""), rank)
    return ranks


class Mender:
    """`mend(text)` for one language; None from `for_lang` where it has no word list."""

    def __init__(self, code: str):
        self.ranks = _ranks(code)
        self.code = code

    @classmethod
    def for_lang(cls, lang: str | None) -> Mender | None:
        code = _word_list(lang)
        return None if code is None else _mender(code)

    def _rank(self, word: str) -> int | None:
        rank = self.ranks.get(word)
        return None if rank is None or (len(word) == 1 and rank >= COMMON) else rank

    def mend(self, text: str, line_start: bool = True) -> str:
        """`text` with its run-together words split and its digit-misread words mended."""
        if not LATIN.search(text) or KANA_CJK.search(text):
            return text
        if self.code == "en":
            text = PIPE_FOR_I.sub("I", text)
        return self._tokens(text, line_start)

    def mend_words(self, words: list[str]) -> list[list[str]]:
        """A line's words (in order), each mended into one word or, split, two."""
        out = []
        for i, word in enumerate(words):
            after = words[i + 1] if i + 1 < len(words) else ""
            if self.code == "en" and word == "|" and after[:1].isalpha():
                out.append(["I"])
                continue
            mended = self._tokens(word, line_start=i == 0) if LATIN.search(word) else word
            out.append(mended.split(" ") if " " in mended and " " not in word else [mended])
        return out

    def _tokens(self, text: str, line_start: bool) -> str:  # each token of `text` mended, the rest kept
        out, last = [], 0
        for m in _TOKEN.finditer(text):
            token = m.group()
            if not (line_start and token[:1].islower() and not text[:m.start()].strip()):
                out += [text[last:m.start()], self._token(token)]
                last = m.end()
        return "".join(out) + text[last:]

    def _token(self, token: str) -> str:
        low = token.lower()
        if len(low) < 2 or self._rank(low) is not None:
            return token
        if any(c.isdigit() for c in low):
            return self._digits(token, low)
        return self._split(token, low) if low.isalpha() and len(low) >= 4 else token

    def _digits(self, token: str, low: str) -> str:
        if not any(c.isalpha() for c in low) or _DIGITS_FIRST.fullmatch(low):
            return token
        found = set()
        for extra in LOOKALIKES_TOO:
            table = {**LOOKALIKES, **extra}
            word = "".join(table.get(c, c) for c in low)
            rank = self._rank(word)
            if rank is not None and rank < FREQUENT and word.isalpha():
                found.add(word)
        if len(found) != 1:
            return token
        word = found.pop()
        letters = [c for c in token if c.isalpha()]
        if all(c.isupper() for c in letters):
            return word.upper()
        return word.capitalize() if token[0] == letters[0] and letters[0].isupper() else word

    def _split(self, token: str, low: str) -> str:
        best = None
        for i in range(1, len(low)):
            a, b = self._rank(low[:i]), self._rank(low[i:])
            if a is None or b is None:
                continue
            common_a, common_b = a < COMMON, b < COMMON
            if len(low) - i == 1 and low[i:] in NOT_TRAILING:
                continue
            ok = (common_a and common_b) or (
                common_a and len(low) - i >= 4 and b < FREQUENT) or (
                common_b and i >= 4 and a < FREQUENT and len(low) - i >= 2)
            if ok and (best is None or max(a, b) < best[0]):
                best = (max(a, b), i)
        return token if best is None else f"{token[:best[1]]} {token[best[1]:]}"


@lru_cache(maxsize=None)
def _mender(code: str) -> Mender:
    return Mender(code)


def load_words(lang: str | None) -> None:
    """Load `lang`'s word list now (once a process) rather than on the first page that needs it."""
    Mender.for_lang(lang)


def version_note(lang: str | None, mend: bool) -> str:
    """What an engine's version says of mending: ", words mended (pyspellchecker 0.9.1, en)", or ""."""
    code = _word_list(lang) if mend else None
    return f", words mended (pyspellchecker {dist_version('pyspellchecker')}, {code})" if code else ""


def mend_lines(lines: list, lang: str | None) -> list:
    """`engines.layout.Line`s with each line's text, and its words, mended (`Mender.mend`); a word
    split in two gets two boxes, its box cut in proportion to the letters of each part."""
    mender = Mender.for_lang(lang)
    if mender is None:
        return lines
    out = []
    for line in lines:
        if KANA_CJK.search(line.text):  # Japanese, Chinese: as read
            out.append(line)
            continue
        text = mender.mend(line.text)
        words = []
        for (word, conf, box), parts in zip(line.words, mender.mend_words([w for w, _, _ in line.words])):
            if len(parts) == 1:
                words.append((parts[0], conf, box))
                continue
            x, width = box.x0, box.x1 - box.x0
            for part in parts:
                share = width * len(part) / len(word)
                words.append((part, conf, replace(box, x0=x, x1=x + share)))
                x += share
        out.append(replace(line, text=text, words=words) if text != line.text or words != line.words else line)
    return out
