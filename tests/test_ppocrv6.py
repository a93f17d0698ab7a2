"""PP-OCRv6 (real ONNX models from the rapidocr wheel) through the real pipeline, offline."""

import pytest
from PIL import Image

from conftest import assert_read_in_manga_order, write_manga_pages, TEST_SEED, recall, truth_of
from etl.run.job import run_ocr
from etl.cli import main
from etl.errors import ConfigError
from etl.dataset.views import connect
from tools.synthetic import make_page, make_strip

pytestmark = pytest.mark.slow


def test_ppocrv6_reads_art_heavy_comic_pages_on_lithops(comic_pages, tmp_path):
    out = tmp_path / "ds"
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="ppocrv6", out=str(out), workers=2)
    assert (s.ok, s.failed) == (6, 0), s.examples
    truth = truth_of(comic_pages)
    con = connect(str(out))
    got = dict(con.execute("select page_id, text from page_text where engine = 'ppocrv6'").fetchall())
    scores = {pid: recall(truth[pid], got[pid]) for pid in truth}
    assert sum(scores.values()) / len(scores) >= 0.95, scores
    assert min(scores.values()) >= 0.85, scores

    version = con.execute("select any_value(engine_version) from pages").fetchone()[0]
    assert "PP-OCRv6 small" in version and "onnxruntime" in version and version.endswith("cpu)")
    levels = dict(con.execute("select level, count(*) from elements group by level").fetchall())
    assert set(levels) == {"word", "line", "block"} and levels["word"] > levels["line"] >= levels["block"]
    lines = con.sql("select * from elements where level = 'line'").pl()
    assert lines["polygon"].list.len().eq(4).all() and lines["confidence"].is_between(0, 1).all()
    assert (lines["x0"] <= lines["x1"]).all() and (lines["y0"] <= lines["y1"]).all()
    # Words carry their own score (from the recogniser's characters) and sit inside their line.
    words = con.sql("select confidence from elements where level = 'word'").pl()
    assert words["confidence"].is_not_null().all() and words["confidence"].is_between(0, 1).all()
    outside = con.execute(
        "select count(*) from elements w join elements l on w.page_id = l.page_id and w.line_id = l.line_id "
        "and w.level = 'word' and l.level = 'line' "
        "where w.x0 < l.x0 - 3 or w.x1 > l.x1 + 3 or w.y0 < l.y0 - 3 or w.y1 > l.y1 + 3").fetchone()[0]
    assert outside == 0
    gaps = con.execute("select count(*) from (select page_id, level, max(reading_order) + 1 - count(*) g "
                       "from elements group by all) where g <> 0").fetchone()[0]
    assert gaps == 0
    con.close()


def test_ppocrv6_reads_vertical_japanese_in_manga_order_and_gpu_falls_back(tmp_path):
    truth = write_manga_pages(tmp_path / "manga", (5200, 5201))
    folder = tmp_path / "manga"
    out = tmp_path / "ds"
    # gpu=true where onnxruntime has no CUDA provider: accepted, runs on the CPU, says so.
    s = run_ocr(str(folder / "manifest.csv"), engine="ppocrv6", out=str(out), workers=1, lang="ja", gpu=True)
    assert (s.ok, s.failed) == (2, 0), s.examples
    con = connect(str(out))
    assert "gpu=true: no CUDA provider" in con.execute("select any_value(engine_version) from pages").fetchone()[0]
    assert_read_in_manga_order(con, truth)
    con.close()


def _engine(**options):
    from engines import get_engine

    cls = get_engine("ppocrv6")
    return cls(cls.parse_options(options))


def test_ppocrv6_reads_a_low_resolution_page():
    # A page at 30% of print size: its lettering is about 9 px tall.
    img, page = make_page(TEST_SEED + 40)
    small = img.resize((360, 510), Image.LANCZOS)
    assert recall(page.text, _engine().read(small).text) >= 0.9


def test_ppocrv6_tiles_a_webtoon_strip_and_reads_each_line_once():
    # 14 pages stacked, 360 x 7140: seen whole at the detector's 2000 px its lettering shrinks to
    # about 2 px and nothing is found; in overlapping windows every line is, once.
    img, page = make_strip(TEST_SEED + 50, 14, 360)
    tiled = _engine().read(img)
    lines = [e for e in tiled.elements if e.level == "line"]
    assert recall(page.text, tiled.text) >= 0.95
    assert len(page.lines) - 3 <= len(lines) <= len(page.lines)  # no line read twice where windows overlap
    assert all(0 <= e.y0 <= e.y1 <= img.height for e in lines)
    untiled = _engine(tile=0).read(img)
    assert recall(page.text, untiled.text) < 0.5


def test_furigana_are_kept_out_of_the_text_and_tied_to_the_column_they_read():
    from tools.synthetic import make_manga_page

    hits = 0
    for seed in (TEST_SEED + 60, TEST_SEED + 61):
        img, page = make_manga_page(seed, furigana=True)
        result = _engine(lang="ja").read(img)
        chars = "".join(result.text.split())
        assert all(line.text in chars for line in page.lines)  # the columns themselves all read
        ruby = [e for e in result.elements if e.level == "furigana"]
        lines = {e.line_id: e for e in result.elements if e.level == "line"}
        for e in ruby:
            assert e.text in page.furigana and e.text not in chars  # a reading, and out of the text
            host = lines[e.line_id]  # beside the column it reads, on its right
            assert e.x0 >= (host.x0 + host.x1) / 2 and min(e.y1, host.y1) - max(e.y0, host.y0) > 0
        hits += len(ruby)
    assert hits >= 4  # most readings are found (one per bubble, four bubbles a page)


def test_ppocrv6_unsupported_language_fails_up_front(comic_pages, tmp_path, capsys):
    manifest = str(comic_pages / "manifest.csv")
    with pytest.raises(ConfigError, match=r"lang='klingon' is not read by the PP-OCRv6 recogniser.*\ben\b"):
        run_ocr(manifest, engine="ppocrv6", out=str(tmp_path / "a"), lang="klingon")
    assert main(["ocr", f"manifest={manifest}", "engine=ppocrv6", f"out={tmp_path / 'b'}", "tile=1"]) == 2
    assert "tile" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_weak_lines_are_read_again_and_keep_their_best_reading():
    from PIL import ImageFilter

    # A page shrunk to 240 px wide and blurred: some lines come back with low scores.
    img, page = make_page(TEST_SEED + 62)
    worn = img.resize((240, 340), Image.BILINEAR).filter(ImageFilter.GaussianBlur(0.8))
    once, again = _engine(retry_below=0).read(worn), _engine().read(worn)

    def lines(result):
        return {tuple(round(v) for v in (e.x0, e.y0, e.x1, e.y1)): e for e in result.elements if e.level == "line"}

    before, after = lines(once), lines(again)
    assert before.keys() <= after.keys()  # the same detection: readings change (a dropped line may come back)
    assert all(after[b].confidence >= e.confidence for b, e in before.items())
    assert all(after[b].text == e.text for b, e in before.items() if e.confidence >= 0.9)  # confident lines untouched
    assert sum(after[b].confidence > e.confidence for b, e in before.items()) >= 1
    assert recall(page.text, again.text) > recall(page.text, once.text)


def test_word_boxes_of_an_upside_down_page_land_on_their_words():
    # Every line of a page turned 180 degrees is read upside down and turned over by the angle
    # classifier; each word's box must still be where that word is on the turned page.
    img, _ = make_page(TEST_SEED + 3)
    w, h = img.size
    engine = _engine(lang="en")
    upright = {}
    for e in engine.read(img).elements:
        if e.level == "word":
            upright.setdefault(e.text, []).append((e.x0, e.y0, e.x1, e.y1))
    placed = [any(max(abs(a - b) for a, b in zip((w - e.x1, h - e.y1, w - e.x0, h - e.y0), box)) < 12
                  for box in upright[e.text])
              for e in engine.read(img.rotate(180)).elements if e.level == "word" and e.text in upright]
    assert len(placed) >= 20 and sum(placed) >= 0.9 * len(placed)
