"""PaddleOCR (PP-OCRv5 mobile, real weights from a package) through the real pipeline."""


import pytest

from conftest import assert_read_in_manga_order, write_manga_pages, recall, truth_of
from etl.run.job import run_ocr
from etl.cli import main
from etl.errors import ConfigError
from etl.dataset.views import connect

pytestmark = pytest.mark.slow


def test_paddleocr_reads_art_heavy_comic_pages_on_lithops(comic_pages, tmp_path):
    out = tmp_path / "ds"
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="paddleocr", out=str(out), workers=2)
    assert (s.ok, s.failed) == (6, 0), s.examples
    truth = truth_of(comic_pages)
    con = connect(str(out))
    got = dict(con.execute("select page_id, text from page_text where engine = 'paddleocr'").fetchall())
    scores = {pid: recall(truth[pid], got[pid]) for pid in truth}
    assert sum(scores.values()) / len(scores) >= 0.95, scores
    assert min(scores.values()) >= 0.85, scores

    version = con.execute("select any_value(engine_version) from pages").fetchall()[0][0]
    assert "PP-OCRv5_mobile_det" in version and "paddlepaddle 3.2" in version and version.endswith("cpu)")
    levels = dict(con.execute("select level, count(*) from elements group by level").fetchall())
    assert set(levels) == {"word", "line", "block"} and levels["word"] > levels["line"] >= levels["block"]
    # Lines: a 4-point polygon, an upright box around it, a score in 0..1; words carry boxes, no score.
    lines = con.sql("select * from elements where level = 'line'").pl()
    assert lines["polygon"].list.len().eq(4).all() and lines["confidence"].is_between(0, 1).all()
    assert (lines["x0"] <= lines["x1"]).all() and (lines["y0"] <= lines["y1"]).all()
    assert not lines["vertical"].any()
    assert con.execute("select count(*) from elements where level = 'word' and confidence is not null").fetchone()[0] == 0
    # Reading order: 0..n-1 per page and level, and the page text follows it.
    gaps = con.execute("select count(*) from (select page_id, level, max(reading_order) + 1 - count(*) g "
                       "from elements group by all) where g <> 0").fetchone()[0]
    assert gaps == 0
    # Words sit inside their line's box (in source pixels).
    outside = con.execute(
        "select count(*) from elements w join elements l on w.page_id = l.page_id and w.line_id = l.line_id "
        "and w.level = 'word' and l.level = 'line' "
        "where w.x0 < l.x0 - 3 or w.x1 > l.x1 + 3 or w.y0 < l.y0 - 3 or w.y1 > l.y1 + 3").fetchone()[0]
    assert outside == 0
    con.close()


def test_paddleocr_reads_vertical_japanese_in_manga_order_and_gpu_falls_back(tmp_path):
    truth = write_manga_pages(tmp_path / "manga", (5100, 5101))
    folder = tmp_path / "manga"
    out = tmp_path / "ds"
    # gpu=true on a machine without CUDA: accepted, runs on the CPU, and says so in the version.
    s = run_ocr(str(folder / "manifest.csv"), engine="paddleocr", out=str(out), workers=1, lang="ja", gpu=True)
    assert (s.ok, s.failed) == (2, 0), s.examples
    con = connect(str(out))
    assert "gpu=true: no CUDA device" in con.execute("select any_value(engine_version) from pages").fetchone()[0]
    assert_read_in_manga_order(con, truth)
    con.close()


def test_paddleocr_unsupported_language_and_missing_weights_fail_up_front(comic_pages, tmp_path, capsys, empty_dir):
    manifest = str(comic_pages / "manifest.csv")
    with pytest.raises(ConfigError, match=r"lang='ko' is not read by the PP-OCRv5 mobile recogniser.*model_dir="):
        run_ocr(manifest, engine="paddleocr", out=str(tmp_path / "a"), lang="ko")
    with pytest.raises(ConfigError, match=r"PP-OCRv5_mobile_det/inference.pdiparams.*never downloaded"):
        run_ocr(manifest, engine="paddleocr", out=str(tmp_path / "b"), model_dir=str(empty_dir))
    # The CLI: exit 2, the reason on stderr, nothing written.
    code = main(["ocr", f"manifest={manifest}", "engine=paddleocr", f"out={tmp_path / 'c'}", "lang=klingon"])
    assert code == 2 and "klingon" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
