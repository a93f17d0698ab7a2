"""`just search`: ranked full-text search over the lines of a real run (PP-OCRv6 on generated comic
and manga pages), English and Japanese, its index refreshed shard by shard as runs add shards."""

import os

import pytest

from conftest import write_manga_pages
from etl.run.job import run_ocr
from etl.cli import main
from etl.dataset.views import connect
from etl.read.search import INDEX_DIR, refresh_index, search, tokens

pytestmark = pytest.mark.slow


def longest_line(out: str, page_id: str) -> str:
    con = connect(out)
    lines = [r[0] for r in con.execute("select text from elements where page_id = ? and level = 'line'",
                                       [page_id]).fetchall()]
    con.close()
    return max(lines, key=lambda t: len(tokens(t)))


def test_tokens_are_words_and_cjk_bigrams():
    assert tokens("Don't PANIC, ＡＢＣ!") == ["don", "t", "panic", "abc"]
    assert tokens("今日は晴れ") == ["今日", "日は", "は晴", "晴れ"] and tokens("空") == ["空"]


def test_search_finds_a_lines_page_in_english_and_japanese_and_keeps_up_with_new_runs(comic_pages, tmp_path, capsys):
    out = str(tmp_path / "ds")
    assert run_ocr(str(comic_pages / "manifest.csv"), out=out, batch=2).all_ok
    first = refresh_index(out)
    assert (first.indexed, first.kept) == (3, 0)
    index_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "ds" / INDEX_DIR).rglob("*.parquet")}
    assert len(index_files) == 3

    line = longest_line(out, "comic-003")
    hits = search(out, line.lower())  # case and spacing do not matter
    assert hits["page_id"][0] == "comic-003" and hits["text"][0] == line, hits
    assert hits["x1"][0] > hits["x0"][0] and hits["y1"][0] > hits["y0"][0]

    # Another run adds manga pages: only its shards are indexed, the first run's index files stay.
    manga = write_manga_pages(tmp_path / "manga", [7300, 7301])
    assert run_ocr(str(tmp_path / "manga" / "manifest.csv"), out=out, batch=1).all_ok
    column = next(c for c in manga["manga-1"] if c not in manga["manga-0"])  # the phrases are few: one of its own
    hits = search(out, column)
    assert hits["page_id"][0] == "manga-1" and hits["text"][0] == column, hits
    assert {p: p.stat().st_mtime_ns for p in index_files} == index_files
    again = refresh_index(out)
    assert (again.indexed, again.kept, again.dropped) == (0, 5, 0)

    # A shard that is gone takes its index file with it.
    gone = sorted((tmp_path / "ds" / "elements").rglob("*.parquet"))[0]
    os.remove(gone)
    assert refresh_index(out).dropped == 1

    assert main(["search", f"out={out}", f"q={column}", "limit=3"]) == 0
    printed = capsys.readouterr().out
    assert "manga-1" in printed and column in printed
    assert main(["search", f"out={out}", "q=..."]) == 2  # nothing to search for
    assert main(["search", f"out={tmp_path / 'nowhere'}", "q=word"]) == 2
