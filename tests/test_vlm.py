"""qwen, gemma, deepseek against a local stand-in of the remote model (the one allowed stand-in)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lithops.constants import LITHOPS_TEMP_DIR

from conftest import recall, truth_of
from engines.vlm import DeepSeekEngine, QwenEngine, parse_json_list
from etl.run.job import run_ocr
from etl.dataset.views import connect, query
from fake_vlm import FakeVLM

pytestmark = pytest.mark.slow
SECRET = "sk-or-v1-TESTSECRET-9f8e7d6c5b4a"


@pytest.fixture
def fake(comic_pages, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    with FakeVLM.of_folder(comic_pages) as server:
        yield server


def run(comic_pages, out, engine, fake, **kw):
    return run_ocr(str(comic_pages / "manifest.csv"), engine=engine, out=str(out), base_url=fake.base_url, **kw)


def test_each_family_fills_the_dataset_with_text_and_boxes(comic_pages, fake, tmp_path):
    out = tmp_path / "ds"
    for engine in ("qwen", "deepseek", "gemma"):
        s = run(comic_pages, out, engine, fake, limit=3, max_side=800)
        assert (s.ok, s.failed) == (3, 0), s.examples
        assert s.prompt_tokens > 0 and s.completion_tokens > 0
    truth = {pid: json.loads(line)["lines"] for line in (comic_pages / "truth.jsonl").read_text().splitlines()
             for pid in [json.loads(line)["page_id"]]}
    texts = truth_of(comic_pages)
    con = connect(str(out))
    rows = con.sql("select * from pages order by engine, page_id").pl()
    assert rows["engine"].to_list() == ["deepseek"] * 3 + ["gemma"] * 3 + ["qwen"] * 3
    for r in rows.iter_rows(named=True):
        assert recall(texts[r["page_id"]], r["text"]) == 1.0
        assert r["prompt_tokens"] > 0 and max(r["sent_width"], r["sent_height"]) <= 812
        assert (r["width"], r["height"]) == (1200, 1700)
        assert r["engine_version"].startswith(r["engine"]) and "127.0.0.1" in r["engine_version"]
    costs = dict(con.execute("select engine, sum(cost_usd) from pages group by 1").fetchall())
    assert costs["qwen"] > 0 and costs["deepseek"] == 0 and costs["gemma"] > 0
    # Boxes in source pixels: each qwen/deepseek line lands on its true line.
    for engine, tol in (("qwen", 0.03), ("deepseek", 0.01)):
        els = con.execute("select page_id, text, x0, y0, x1, y1 from elements where engine = ?", [engine]).fetchall()
        assert len(els) == sum(len(truth[p]) for p in ("comic-000", "comic-001", "comic-002"))
        for pid, text, *box in els:
            true = next(t["box"] for t in truth[pid] if t["text"] == text)
            assert all(abs(a - b) <= tol * 1700 for a, b in zip(box, true)), (engine, text, box, true)
    assert con.execute("select count(*) from elements where engine = 'gemma' and x0 is null").fetchone()[0] > 0
    # What went over the wire: the real MIME type, a resized image, the key as a bearer token.
    assert {r["mime"] for r in fake.requests} == {"image/png"} and {r["format"] for r in fake.requests} == {"PNG"}
    qwen_sizes = {r["size"] for r in fake.requests if r["model"].startswith("qwen")}
    assert all(w % 28 == 0 and h % 28 == 0 for w, h in qwen_sizes)  # Qwen2.5-VL's grid
    assert {r["auth"] for r in fake.requests} == {f"Bearer {SECRET}"}


def test_a_429_with_retry_after_costs_a_retry_not_a_page(comic_pages, fake, tmp_path):
    fake.fault = lambda pid, attempt: ("429", 1) if attempt == 1 else None
    s = run(comic_pages, tmp_path / "ds", "qwen", fake)
    assert (s.ok, s.failed) == (6, 0)
    by_page = {}
    for r in fake.requests:
        by_page.setdefault(r["page"], []).append(r)
    assert all(len(v) == 2 for v in by_page.values())


def test_retry_after_is_honoured(comic_pages, fake, tmp_path):
    stamps = []
    fake.fault = lambda pid, attempt: (stamps.append(time.monotonic()), ("429", 2) if attempt == 1 else None)[1]
    s = run(comic_pages, tmp_path / "ds", "gemma", fake, limit=1)
    assert s.ok == 1 and len(stamps) == 2 and stamps[1] - stamps[0] >= 1.9


def test_server_errors_until_retries_run_out_become_transient_error_rows(comic_pages, fake, tmp_path):
    fake.fault = lambda pid, attempt: ("500",)
    out = tmp_path / "ds"
    s = run(comic_pages, out, "deepseek", fake, limit=2, api_retries=2, max_wait=0.2)
    assert (s.ok, s.failed) == (0, 2) and s.error_kinds == {"api_error": 2}
    assert all(v == 3 for v in fake.attempts.values())  # first try + 2 retries
    assert "HTTP 500" in s.examples[0]["error"] and "upstream overloaded" in s.examples[0]["error"]
    fake.fault = None
    s = run(comic_pages, out, "deepseek", fake, limit=2)
    assert (s.ok, s.skipped) == (2, 0)  # the rerun finishes them


@pytest.mark.parametrize(
    "fault, kind, words",
    [
        (("slow", 3), "api_timeout", "timeout=1"),
        (("badjson",), "bad_answer", "not"),
        (("length",), "truncated", "max_tokens"),
        (("empty",), "empty_answer", "empty answer"),
    ],
)
def test_bad_answers_are_error_rows_never_empty_successes(comic_pages, fake, tmp_path, fault, kind, words):
    fake.fault = lambda pid, attempt: fault
    s = run(comic_pages, tmp_path / "ds", "qwen", fake, limit=1, timeout=1, api_retries=0)
    assert (s.ok, s.failed) == (0, 1) and s.error_kinds == {kind: 1}, s.examples
    assert words in s.examples[0]["error"]


def test_the_key_appears_in_no_output_file_log_or_payload(comic_pages, fake, tmp_path):
    fake.fault = lambda pid, attempt: ("500",) if pid == "comic-001" else None
    out = tmp_path / "ds"
    repo = Path(__file__).resolve().parent.parent
    started = time.time()
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENROUTER_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", "ocr", f"manifest={comic_pages / 'manifest.csv'}", "engine=qwen",
         f"out={out}", f"base_url={fake.base_url}", f"api_key={SECRET}", "api_retries=1", "max_wait=0.1", "limit=3",
         "progress=false"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 3, done.stdout + done.stderr  # one page failed, on purpose
    assert SECRET not in done.stdout + done.stderr
    assert "rerun" in done.stdout and "api_key" not in done.stdout
    assert {r["auth"] for r in fake.requests} == {f"Bearer {SECRET}"}  # it did reach the workers
    scanned = 0
    roots = [out, Path(LITHOPS_TEMP_DIR), Path.home() / ".lithops"]
    for root in roots:
        for f in root.rglob("*") if root.exists() else []:
            if f.is_file() and f.stat().st_mtime >= started - 1:
                assert SECRET.encode() not in f.read_bytes(), f
                scanned += 1
    assert scanned >= 4  # the dataset's shards and Lithops' job files were looked at
    error = query(str(out), "select error from pages where page_id = 'comic-001'")["error"][0]
    assert "HTTP 500" in error and SECRET not in error


def test_no_piece_of_the_key_survives_an_api_that_echoes_it(comic_pages, fake, tmp_path):
    """An error body cut at 300 characters inside the echoed `Bearer <key>` once left its first
    characters in pages.error; a key prefix or its base64 went through untouched."""
    import base64

    fake.fault = lambda pid, attempt: ("echo",)
    out = tmp_path / "ds"
    started = time.time()
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENROUTER_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", "ocr", f"manifest={comic_pages / 'manifest.csv'}", "engine=qwen",
         f"out={out}", f"base_url={fake.base_url}", f"api_key={SECRET}", "api_retries=0", "limit=2", "progress=false"],
        cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stdout + done.stderr
    pieces = [SECRET[i:i + 8] for i in range(len(SECRET) - 7)] + [base64.b64encode(SECRET.encode()).decode()[:12]]
    errors = query(str(out), "select error from pages")["error"].to_list()
    assert all("HTTP 502" in e and "Bearer ***" in e for e in errors), errors
    texts = [done.stdout + done.stderr, *errors]
    for root in (out, Path(LITHOPS_TEMP_DIR), Path.home() / ".lithops"):
        for f in root.rglob("*") if root.exists() else []:
            if f.is_file() and f.stat().st_mtime >= started - 1:
                texts.append(f.read_bytes().decode("utf-8", "replace"))
    leaks = [(p, t[:80]) for t in texts for p in pieces if p in t]
    assert not leaks, leaks


def test_crops_mode_gives_detector_boxes_to_a_model_without_grounding(comic_pages, fake, tmp_path):
    s = run(comic_pages, tmp_path / "ds", "gemma", fake, limit=2, vlm_mode="crops")
    assert (s.ok, s.failed) == (2, 0), s.examples
    texts = truth_of(comic_pages)
    truth = {json.loads(x)["page_id"]: json.loads(x)["lines"] for x in (comic_pages / "truth.jsonl").read_text().splitlines()}
    con = connect(str(tmp_path / "ds"))
    for pid, text in con.execute("select page_id, text from pages").fetchall():
        assert recall(texts[pid], text) >= 0.9
    els = con.execute("select page_id, text, x0, y0, x1, y1 from elements where x0 is not null").fetchall()
    assert len(els) >= sum(len(truth[p]) for p in ("comic-000", "comic-001"))
    for pid, text, x0, y0, x1, y1 in els:  # each box holds the centre of a true line with that text
        hits = [t for t in truth[pid] if x0 <= (t["box"][0] + t["box"][2]) / 2 <= x1 and y0 <= (t["box"][1] + t["box"][3]) / 2 <= y1]
        assert hits and recall(" ".join(h["text"] for h in hits), text) >= 0.5, (text, hits)
    assert con.execute("select min(prompt_tokens) from pages").fetchone()[0] >= 100
    assert all(r["crop"] for r in fake.requests)  # every request was one line


def test_parsers_repair_what_can_be_repaired():
    assert parse_json_list('```json\n[{"text": "A", "bbox_2d": [1, 2, 3, 4]},]\n```') == [{"text": "A", "bbox_2d": [1, 2, 3, 4]}]
    cut = '[{"text": "A", "bbox_2d": [1, 2, 3, 4]}, {"text": "B", "bbox_2d": [5, 6'
    assert parse_json_list(cut) == [{"text": "A", "bbox_2d": [1, 2, 3, 4]}]
    assert parse_json_list("I cannot read this image.") is None
    q = QwenEngine.__new__(QwenEngine)
    assert q.parse('[{"text": "HI", "bbox_2d": [0, 0, 10, 10]}, {"text": "", "bbox_2d": [1,1,2,2]}, {"text": "NOBOX"}]') == \
        [("HI", (0.0, 0.0, 10.0, 10.0)), ("NOBOX", None)]
    d = DeepSeekEngine.__new__(DeepSeekEngine)
    assert d.parse("<|ref|>HELLO THERE<|/ref|><|det|>[[10, 20, 500, 60]]<|/det|>\n<|ref|>image<|/ref|><|det|>[[0,0,999,999]]<|/det|>") == \
        [("HELLO THERE", (10.0, 20.0, 500.0, 60.0))]
    assert d.parse("<|ref|>broken") is None
