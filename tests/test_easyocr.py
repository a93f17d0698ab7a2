"""EasyOCR (real CRAFT + English weights from a package, PyTorch on the CPU) through the real pipeline."""

import os
import subprocess
import sys

import pytest

from conftest import recall, truth_of
from etl.run.job import run_ocr
from etl.errors import ConfigError
from etl.dataset.views import connect

pytestmark = pytest.mark.slow


def test_easyocr_reads_art_heavy_comic_pages_offline_and_gpu_falls_back(comic_pages, tmp_path):
    out = tmp_path / "ds"
    home = tmp_path / "home"
    home.mkdir()
    os.environ["HOME"], old_home = str(home), os.environ["HOME"]
    try:
        # gpu=true without CUDA: accepted, runs on the CPU and records it. 2 pages, one a worker, keep the
        # test short (EasyOCR's detector takes ~15 s a page on one core).
        s = run_ocr(str(comic_pages / "manifest.csv"), engine="easyocr", out=str(out), workers=2, limit=2, batch=1,
                    gpu=True)
    finally:
        os.environ["HOME"] = old_home
    assert (s.ok, s.failed) == (2, 0), s.examples
    assert list(home.iterdir()) == [] or all(p.name == ".lithops" for p in home.iterdir())  # no ~/.EasyOCR
    truth = truth_of(comic_pages)
    con = connect(str(out))
    got = dict(con.execute("select page_id, text from page_text").fetchall())
    scores = {pid: recall(truth[pid], got[pid]) for pid in got}
    assert len(scores) == 2 and sum(scores.values()) / 2 >= 0.9, scores
    version = con.execute("select any_value(engine_version) from pages").fetchall()[0][0]
    assert version.startswith("easyocr 1.7") and "english_g2" in version and "gpu=true: no CUDA device" in version
    lines = con.sql("select * from elements where level = 'line'").pl()
    assert len(lines) >= 10 and lines["polygon"].list.len().eq(4).all()
    assert lines["confidence"].is_between(0, 1).all() and (lines["x0"] < lines["x1"]).all()
    # EasyOCR gives lines, no word boxes: no word rows are made up.
    assert con.execute("select count(*) from elements where level = 'word'").fetchone()[0] == 0
    con.close()


def test_easyocr_languages_without_weights_and_missing_folders_are_clear_errors(comic_pages, tmp_path, empty_dir):
    manifest = str(comic_pages / "manifest.csv")
    with pytest.raises(ConfigError, match=r"lang=ja needs japanese_g2.pth.*ships English only.*model_dir="):
        run_ocr(manifest, engine="easyocr", out=str(tmp_path / "a"), lang="ja")
    with pytest.raises(ConfigError, match=r"lang=fr needs latin_g2.pth"):
        run_ocr(manifest, engine="easyocr", out=str(tmp_path / "a"), lang="fr")
    with pytest.raises(ConfigError, match=r"unknown language\(s\) xx"):
        run_ocr(manifest, engine="easyocr", out=str(tmp_path / "a"), lang="xx")
    with pytest.raises(ConfigError, match=r"missing craft_mlt_25k.pth, english_g2.pth.*never downloaded"):
        run_ocr(manifest, engine="easyocr", out=str(tmp_path / "a"), model_dir=str(empty_dir))
    assert not (tmp_path / "a").exists()


def test_engines_import_their_frameworks_only_when_used():
    code = ("import sys; from engines import get_engine; get_engine('easyocr'); get_engine('paddleocr'); "
            "print(sorted(m for m in ('torch', 'paddle', 'easyocr', 'paddleocr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
