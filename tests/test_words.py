"""Mending words run together and digits read for letters: real word lists (pyspellchecker's,
offline) and real engines (PP-OCRv6, Tesseract) on a page the test draws."""

import pytest
from PIL import Image, ImageDraw

from engines.base import get_engine
from engines.layout import Box, Line
from engines.words import Mender, mend_lines
from etl.run.plan import config_hash
from tools.synthetic import _font


def mend(text: str, lang: str = "en") -> str:
    return Mender.for_lang(lang).mend(text)


def test_words_run_together_are_split_where_the_word_list_leaves_no_doubt():
    # Lines PP-OCRv6, PaddleOCR and EasyOCR read on real xkcd pages, each a kind.
    assert mend("RELATEDTO WHAT YOU") == "RELATED TO WHAT YOU"
    assert mend("MYCONTROL KEY IS HARD TOREACH,") == "MY CONTROL KEY IS HARD TO REACH,"
    assert mend("THAT'S NOTA") == "THAT'S NOT A"  # two common words
    assert mend("ATHREAD BY SOMEONE") == "A THREAD BY SOMEONE"  # a lone letter leads
    assert mend("Throwit allout") == "Throw it all out"  # case kept
    assert mend("ICANT HELP IT") == "I CANT HELP IT"  # a word lettered without its apostrophe is a word
    # What is left alone: a rare word as a part ("din"), a lone letter trailing ("rapid a" is Italian),
    # names, an apostrophe, joined tokens (URLs, a hyphen), a line starting with the rest of a
    # word hyphenated on the line before.
    for kept in ["ADIN WRITES:", "MANBE IF", "NO GOODI", "ARENT", "rapida", "Dadi", "Kilpatrick and Guarendi", "DOESN'T",
                 "www.peppercarrot.com", "according to Croa-", "ered time and war", "SPACEBAR"]:
        assert mend(kept) == kept, kept
    assert mend("lieve it and ered") == "lieve it and ered"  # "ered" mid-line is no split either


def test_digits_read_for_letters_become_the_word_they_look_like():
    assert mend("S0 I HOLD") == "SO I HOLD"
    assert mend("HI5 LAPTOP I5 FOILED") == "HIS LAPTOP IS FOILED"
    assert mend("BECOME A MA55 of pu2zles") == "BECOME A MASS of puzzles"
    for kept in ["10PM 3RD 80S", "B2B A4 MP3", "Tr0ub4dor&3", "1993", "X11 X12", "BUTT3"]:
        assert mend(kept) == kept, kept
    assert mend("BECOME T4B") == "BECOME TAB" and mend("Hi5 t4b T4b") == "His tab Tab"
    assert mend("SO | HOLD IT") == "SO I HOLD IT" and mend("| just wrote") == "I just wrote"
    assert mend("| SECONDS |") == "I SECONDS |" and mend("cov |") == "cov |"  # a border stays
    assert mend("so | hold", "de") == "so | hold"  # English only


def test_each_language_mends_with_its_own_words_and_others_are_left_as_read():
    assert mend("UNDDAS IST GUT", "deu") == "UND DAS IST GUT"
    assert mend("JESUIS LA", "fr") == "JE SUIS LA"
    assert mend("MYCONTROL", "eng+jpn") == "MY CONTROL" and mend("MYCONTROL", "auto") == "MY CONTROL"
    assert Mender.for_lang("ja") is None and Mender.for_lang("xx") is None
    assert mend("ブラックジャックMYCONTROL") == "ブラックジャックMYCONTROL"  # Japanese lines are not touched
    line = Line("MYCONTROL", 0.9, Box(0, 0, 90, 10), words=[("MYCONTROL", 0.9, Box(0, 0, 90, 10))])
    assert mend_lines([line], "ja") == [line]


def test_a_split_word_gets_its_own_box_cut_from_the_box_it_was_read_in():
    line = Line("HARD TOREACH", 0.95, Box(0, 0, 120, 10),
                words=[("HARD", 0.97, Box(0, 0, 40, 10)), ("TOREACH", 0.93, Box(50, 0, 120, 10))])
    [mended] = mend_lines([line], "en")
    assert mended.text == "HARD TO REACH"
    assert [(w, c, (b.x0, b.x1)) for w, c, b in mended.words] == [
        ("HARD", 0.97, (0, 40)), ("TO", 0.93, (50, 70)), ("REACH", 0.93, (70, 120))]
    # Tesseract's words: a "|" before a word is an "I" in the words as in the line's text.
    words = [("|", 0.9, Box(0, 0, 5, 10)), ("HOLD", 0.9, Box(10, 0, 50, 10)), ("|", 0.5, Box(60, 0, 62, 10))]
    [mended] = mend_lines([Line("| HOLD |", 0.8, Box(0, 0, 62, 10), words=words)], "eng")
    assert mended.text == "I HOLD |" and [w for w, _, _ in mended.words] == ["I", "HOLD", "|"]


@pytest.fixture(scope="module")
def run_together(tmp_path_factory):
    """A page whose lettering runs two pairs of words together, as hand lettering often does."""
    img = Image.new("RGB", (900, 200), "white")
    ImageDraw.Draw(img).text((40, 70), "MYCONTROL KEY IS HARD TOREACH", font=_font(40), fill="black")
    return img


@pytest.mark.parametrize("name", ["ppocrv6", "tesseract"])
def test_engines_mend_what_they_read_unless_told_not_to(run_together, name):
    engine = get_engine(name)
    mending, raw = engine(engine.parse_options({})), engine(engine.parse_options({"mend": "false"}))
    mended, as_read = mending.read(run_together), raw.read(run_together)
    assert ", words mended (pyspellchecker " in mending.version() and "mended" not in raw.version()
    line = lambda r: [e.text for e in r.elements if e.level == "line"]  # noqa: E731
    assert line(as_read) == ["MYCONTROL KEY IS HARD TOREACH"]
    assert line(mended) == ["MY CONTROL KEY IS HARD TO REACH"] and "MY CONTROL" in mended.text
    words = [e for e in mended.elements if e.level == "word"]
    assert [w.text for w in words] == ["MY", "CONTROL", "KEY", "IS", "HARD", "TO", "REACH"]
    whole = {w.text: w for w in as_read.elements if w.level == "word"}["MYCONTROL"]
    assert words[0].x0 == whole.x0 and words[0].x1 == words[1].x0 < words[1].x1 == whole.x1
    # mend=false hashes apart; the default hashes as before the option existed (tests/test_plan.py),
    # so a dataset made then resumes, each row's engine_version saying how it was read.
    assert config_hash(name, engine.parse_options({})) != config_hash(name, engine.parse_options({"mend": "false"}))
