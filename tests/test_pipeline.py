"""End to end on the real parts: Lithops localhost, Tesseract, Parquet, DuckDB."""

import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from conftest import recall, truth_of
from etl.run.job import run_ocr
from etl.cli import main
from etl.dataset.views import connect, query

pytestmark = pytest.mark.slow


def test_comic_pages_are_read_resumed_and_queryable(comic_pages, tmp_path, capsys):
    out = tmp_path / "ds"
    code = main(["ocr", "engine=tesseract", f"manifest={comic_pages / 'manifest.csv'}", f"out={out}", "lang=en", "progress=false"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "6 ok" in printed and "0 failed" in printed and "pages/s" in printed and "just query" in printed

    truth = truth_of(comic_pages)
    got = dict(query(str(out), "select page_id, text from page_text").iter_rows())
    assert set(got) == set(truth)
    scores = {pid: recall(truth[pid], got[pid]) for pid in truth}
    overall = sum(scores.values()) / len(scores)
    assert overall >= 0.9, scores

    # Schema: page rows and element rows as documented.
    con = connect(str(out))
    page = con.sql("select * from pages limit 1").pl().row(0, named=True)
    assert page["engine"] == "tesseract" and page["status"] == "ok" and page["error"] is None
    assert page["engine_version"].startswith("tesseract 5") and len(page["config_hash"]) == 16
    assert page["width"] == 1200 and page["height"] == 1700 and page["duration_ms"] > 0
    levels = dict(con.execute("select level, count(*) from elements group by level").fetchall())
    assert set(levels) == {"word", "line", "block"} and levels["word"] >= levels["line"] >= levels["block"]
    bad = con.execute(
        "select count(*) from elements where confidence < 0 or confidence > 1 or x0 > x1 or y0 > y1 "
        "or x0 < -2 or y0 < -2 or x1 > 1202 or y1 > 1702"
    ).fetchone()[0]
    assert bad == 0
    n = con.execute("select count(*) from pages p join (select page_id, count(*) c from elements group by 1) e "
                "using (page_id) where p.n_elements = e.c").fetchone()[0]
    assert n == 6
    con.close()

    # A second identical run skips every page.
    code = main(["ocr", "engine=tesseract", f"manifest={comic_pages / 'manifest.csv'}", f"out={out}", "lang=eng", "progress=false"])
    assert code == 0
    assert "6 skipped" in capsys.readouterr().out

    # force=true redoes everything; the views still show one row per page.
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=str(out), force=True, limit=2)
    assert (s.ok, s.skipped) == (2, 0)
    con = connect(str(out))
    assert con.execute("select count(*) from raw_pages").fetchone()[0] == 8
    assert con.execute("select count(*), count(distinct page_id) from pages").fetchone() == (6, 6)
    dup = con.execute("select count(*) from (select page_id, level, reading_order, count(*) c from elements "
                  "group by all having c > 1)").fetchone()[0]
    assert dup == 0
    con.close()


def test_broken_images_become_error_rows_and_the_rest_is_read(pages_copy, tmp_path, capsys):
    (pages_copy / "comic-001.png").write_bytes((pages_copy / "comic-001.png").read_bytes()[:3000])  # truncated
    (pages_copy / "comic-002.png").write_text("this is not an image")
    (pages_copy / "comic-003.png").unlink()
    out = tmp_path / "ds"
    args = ["ocr", "engine=tesseract", f"manifest={pages_copy / 'manifest.csv'}", f"out={out}", "batch=3", "progress=false"]
    assert main(args) == 3
    printed = capsys.readouterr().out
    assert "3 failed" in printed and "rerun" in printed

    rows = {r["page_id"]: r for r in query(str(out), "select * from pages").iter_rows(named=True)}
    assert rows["comic-001"]["error_kind"] == "corrupt_image" and "truncated" in rows["comic-001"]["error"]
    assert rows["comic-002"]["error_kind"] == "not_an_image" and "text" in rows["comic-002"]["error"]
    assert rows["comic-003"]["error_kind"] == "missing_file" and "comic-003.png" in rows["comic-003"]["error"]
    assert {pid for pid, r in rows.items() if r["status"] == "ok"} == {"comic-000", "comic-004", "comic-005"}

    # Repair the inputs: the rerun reads only the three failed pages.
    from tools.synthetic import make_page

    for i in (1, 2, 3):
        img, _ = make_page(7100 + i, f"comic-00{i}")
        img.save(pages_copy / f"comic-00{i}.png")
    s = run_ocr(str(pages_copy / "manifest.csv"), engine="tesseract", out=str(out))
    assert (s.skipped, s.ok, s.failed) == (3, 3, 0)
    con = connect(str(out))
    assert con.execute("select count(*), count(distinct page_id), count(*) filter (status = 'ok') from pages").fetchone() == (6, 6, 6)
    assert con.execute("select count(*) from raw_pages").fetchone()[0] == 9


def _kill_reader_of(fifo: Path, within_s: float = 30.0) -> list[int]:
    """Block until a process opens `fifo` for reading, then SIGKILL it."""
    import time

    fd = os.open(fifo, os.O_WRONLY)  # returns once a reader is opening it
    killed = []
    try:
        # The reader's descriptor appears in /proc once its open() returns: poll for it.
        end = time.monotonic() + within_s
        while not killed and time.monotonic() < end:
            for pid in filter(str.isdigit, os.listdir("/proc")):
                if int(pid) == os.getpid():
                    continue
                try:
                    links = [os.readlink(f"/proc/{pid}/fd/{f}") for f in os.listdir(f"/proc/{pid}/fd")]
                except OSError:
                    continue
                if str(fifo) in links:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
    finally:
        os.close(fd)
    return killed


def test_a_killed_worker_loses_only_its_batch_and_a_rerun_completes(pages_copy, tmp_path):
    # comic-002 becomes a FIFO: its worker blocks reading it, and is killed there.
    target = pages_copy / "comic-002.png"
    good = tmp_path / "comic-002.png"
    shutil.move(target, good)
    os.mkfifo(target)
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.extend(_kill_reader_of(target)), daemon=True)
    killer.start()
    out = tmp_path / "ds"
    s = run_ocr(str(pages_copy / "manifest.csv"), engine="tesseract", out=str(out), batch=2, retries=0)
    killer.join(timeout=5)
    assert killed, "the worker reading the FIFO was not found"
    assert (s.ok, s.failed, s.failed_batches) == (4, 2, 1)
    assert s.error_kinds == {"worker_killed": 2}
    rows = dict(query(str(out), "select page_id, error_kind from pages where status = 'error'").iter_rows())
    assert rows == {"comic-002": "worker_killed", "comic-003": "worker_killed"}

    target.unlink()
    shutil.move(good, target)
    s = run_ocr(str(pages_copy / "manifest.csv"), engine="tesseract", out=str(out), batch=2)
    assert (s.skipped, s.ok, s.failed) == (4, 2, 0)
    con = connect(str(out))
    assert con.execute("select count(*), count(distinct page_id), count(*) filter (status = 'ok') from pages").fetchone() == (6, 6, 6)


def test_query_cli_runs_sql_and_files(comic_pages, tmp_path, capsys):
    out = tmp_path / "ds"
    run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=str(out), limit=2)
    repo = Path(__file__).resolve().parent.parent
    for name in ("confident_lines.sql", "join_embeddings.sql", "errors.sql"):
        assert main(["query", f"out={out}", f"file={repo / 'sql' / name}"]) == 0
    assert main(["query", f"out={out}", "sql=select count(*) as n from page_text"]) == 0
    assert "comic-000" in capsys.readouterr().out
    assert main(["query", f"out={out}", "sql=select nope from pages"]) == 2
    # An empty dataset still has the views.
    con = connect(str(tmp_path / "empty"))
    assert con.execute("select count(*) from pages").fetchone()[0] == 0
    assert con.execute("select count(*) from page_text").fetchone()[0] == 0


def test_per_page_timeout_gives_transient_error_rows_and_uri_outputs_work(comic_pages, tmp_path):
    out = f"file://{tmp_path}/ds"  # an fsspec URI as out=
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=out, limit=2, page_timeout=0.2)
    assert (s.ok, s.failed) == (0, 2) and s.error_kinds == {"timeout": 2}
    assert "page_timeout=0.2" in s.examples[0]["error"]
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=out, limit=2)
    assert (s.ok, s.skipped) == (2, 0)  # timed-out pages are retried by the rerun
    assert query(out, "select count(*) as n from page_text")["n"][0] == 2


def test_manifest_extra_columns_reach_the_page_table(comic_pages, tmp_path):
    lines = (comic_pages / "manifest.csv").read_text().splitlines()
    rows = [lines[0] + ",series,volume"] + [f"{line},Night Tower,{i}" for i, line in enumerate(lines[1:3])]
    m = tmp_path / "m.csv"
    m.write_text("\n".join(rows).replace(",comic-", f",{comic_pages}/comic-") + "\n")
    out = str(tmp_path / "ds")
    assert run_ocr(str(m), engine="tesseract", out=out).ok == 2
    got = query(out, "select page_id, series, volume from pages order by page_id").rows()
    assert got == [("comic-000", "Night Tower", "0"), ("comic-001", "Night Tower", "1")]


def test_pages_chosen_by_sql_from_a_dataset_are_read_into_it(comic_pages, tmp_path, capsys):
    """`from=DATASET where=...`: the manifest is a query over the dataset's pages view; exactly those
    pages are read, into the same dataset, with the usual resume."""
    out = str(tmp_path / "ds")
    first = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=out, layout="page")
    assert first.all_ok
    conf = dict(query(out, "select page_id, mean_confidence from pages").iter_rows())
    cut = sorted(conf.values())[2]
    chosen = {pid for pid, c in conf.items() if c < cut}
    assert len(chosen) == 2
    where = f"engine = 'tesseract' and mean_confidence < {cut}"
    code = main(["ocr", f"from={out}", f"where={where}", "engine=tesseract", "layout=regions", "progress=false", "show=0"])
    printed = capsys.readouterr().out
    assert code == 0 and "2 in manifest" in printed, printed
    regions = set(query(out, f"select page_id from pages where config_hash != '{first.config_hash}'")["page_id"])
    assert regions == chosen
    assert set(query(out, f"select page_id from pages where config_hash = '{first.config_hash}'")["page_id"]) == set(conf)
    # Resume: the same selection again reads nothing; limit= takes the first pages of the selection.
    again = run_ocr(from_=out, where=where, engine="tesseract", layout="regions")
    assert (again.pages_total, again.skipped, again.processed) == (2, 2, 0)
    first_three = {f"comic-00{i}" for i in range(3)}
    some = run_ocr(from_=out, where="true", engine="tesseract", layout="regions", limit=3)
    assert (some.skipped, some.ok) == (len(first_three & chosen), len(first_three - chosen))
    # Bad SQL and an empty selection stop before any work (exit 2).
    assert main(["ocr", f"from={out}", "where=no_such_column = 1", "engine=tesseract", "progress=false"]) == 2
    assert main(["ocr", f"from={out}", "where=false", "engine=tesseract", "progress=false"]) == 2
    err = capsys.readouterr().err
    assert "no_such_column" in err and "no page matches" in err
