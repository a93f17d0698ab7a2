"""The text-based doubt signal of cascades: real word lists (pyspellchecker's, offline), real DuckDB."""

import duckdb

from etl.dataset.lexicon import doubtful_text, register


def test_misreads_a_confident_engine_makes_are_doubtful_and_plain_lines_are_not():
    # Misreadings PP-OCRv6 made with confidence >= 0.92 on real xkcd pages, each a kind.
    for misread in ["SO HOUD MY CONTROL KEY", "S0 HOLD IT", "MYCONTROL KEY", "PEOFLE", "ρ = 0.36"]:
        assert doubtful_text(misread, "en"), misread
    for fine in ["SO HOLD MY CONTROL KEY", "IT'S 10PM AND I'M IN THE 80S", "O’BRIEN isn’t here", "42", ""]:
        assert not doubtful_text(fine, "en"), fine
    assert doubtful_text(None, "en") is False


def test_each_language_is_checked_against_its_own_words():
    assert not doubtful_text("Das ist ein kleines Haus", "deu")
    assert doubtful_text("Das ist ein kleines Haus", "en")
    assert not doubtful_text("Das ist ein kleines Haus", "xx")  # no word list: only the script checks
    assert not doubtful_text("Hello there", "auto") and not doubtful_text("Hello there", "eng+jpn")
    assert not doubtful_text("Привет", "rus") and doubtful_text("HELLО", "en")  # a Cyrillic О in English


def test_japanese_is_checked_for_stray_scripts_only():
    assert not doubtful_text("ブラックジャックによろしく", "ja")
    assert not doubtful_text("Tシャツを買った", "ja")  # Latin letters are at home in Japanese
    assert doubtful_text("ミルクρ", "ja")


def test_it_is_an_sql_function_of_every_dataset_connection(tmp_path):
    from etl.dataset.views import connect

    con = connect(str(tmp_path / "none-yet"))
    assert con.sql("select doubtful_text('HOUD', 'en'), doubtful_text('HOLD', 'en'), "
                   "doubtful_text(null, 'en')").fetchall() == [(True, False, False)]
    register(con)  # registering twice is harmless
    other = duckdb.connect()
    register(other)
    assert other.sql("select doubtful_text('S0', null)").fetchall() == [(True,)]
