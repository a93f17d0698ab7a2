"""Model provisioning: one registry of weights with SHA-256s, `just models`, and the lookup order."""

import json
import subprocess
import sys

import pytest

from engines import models
from etl.errors import ConfigError


def test_provision_copies_and_verifies_every_weight_then_locate_prefers_it(tmp_path, monkeypatch):
    target = tmp_path / "models"
    out = subprocess.run([sys.executable, "-m", "engines.models", f"dir={target}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    record = json.loads((target / "MODELS.json").read_text())
    assert set(record) == {"easyocr", "paddleocr"}
    for engine, files in ((e, models.MODEL_SETS[e].files) for e in record):
        assert record[engine]["files"] == {f.path: f.sha256 for f in files}
        assert models.verify(engine, target / engine) == []
    # $COMIC_OCR_MODELS comes before the installed package; model_dir= before both.
    monkeypatch.setenv(models.ENV, str(target))
    assert models.locate("paddleocr") == target / "paddleocr"
    assert models.locate("easyocr", str(target / "easyocr")) == target / "easyocr"

    # A damaged file: the cheap check (size) and the full check (SHA-256) both notice.
    weights = target / "easyocr" / "english_g2.pth"
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert models.verify("easyocr", target / "easyocr") == [
        f"easyocr: {weights} does not match its SHA-256 {models.MODEL_SETS['easyocr'].files[1].sha256[:12]}…"]
    out = subprocess.run([sys.executable, "-m", "engines.models", f"dir={target}", "engines=easyocr", "verify=true"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "english_g2.pth does not match" in out.stderr
    weights.write_bytes(b"short")
    # The lookup passes over a damaged folder to the installed package...
    assert models.locate("easyocr") == models.package_dir(models.MODEL_SETS["easyocr"])
    # ...and names the damaged file when nothing else holds the weights.
    with monkeypatch.context() as m:
        m.setattr(models, "package_dir", lambda _: None)
        with pytest.raises(ConfigError, match=r"\$COMIC_OCR_MODELS/easyocr .*missing english_g2.pth"):
            models.locate("easyocr")
    # Provisioning again repairs it.
    subprocess.run([sys.executable, "-m", "engines.models", f"dir={target}", "engines=easyocr"], check=True,
                   capture_output=True)
    assert models.verify("easyocr", target / "easyocr") == []


def test_unknown_engine_in_just_models_is_a_usage_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "engines.models", f"dir={tmp_path}", "engines=tesseract"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "with weights: easyocr, paddleocr" in out.stderr


def test_a_worker_without_the_weights_makes_engine_init_error_rows(comic_pages, tmp_path, empty_dir):
    """On a cloud backend the client cannot check the worker's image: the worker reports it per page."""
    from etl.dataset.views import connect
    from etl.run.worker import process_batch

    pages = [{"page_id": f"comic-00{i}", "image_uri": str(comic_pages / f"comic-00{i}.png")} for i in range(2)]
    task = {"engine": "easyocr", "options": {"model_dir": str(empty_dir)}, "out": str(tmp_path / "ds"), "run_id": "r1",
            "batch_id": "b1", "config_hash": "h1", "pages": pages, "extra_columns": []}
    result = process_batch(task)
    assert [p["error_kind"] for p in result.pages] == ["engine_init", "engine_init"]
    assert "failed to start" in result.pages[0]["error"] and "craft_mlt_25k.pth" in result.pages[0]["error"]
    con = connect(str(tmp_path / "ds"))
    assert con.execute("select count(*) from pages where error_kind = 'engine_init'").fetchall() == [(2,)]
    con.close()
