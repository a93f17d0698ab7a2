"""Nothing lost: bad input, faults and reruns, on the real pipeline (Lithops localhost, Tesseract)."""

import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from etl.run.job import run_ocr
from etl.cli import main
from etl.errors import ConfigError, InputError
from etl.dataset.views import connect, query

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (a decompression bomb's calling card)."""
    data = encoded(Image.new("L", (8, 8), 255), "PNG")
    ihdr = bytearray(data[16:29])
    ihdr[0:4], ihdr[4:8] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    return data[:16] + bytes(ihdr) + zlib.crc32(b"IHDR" + ihdr).to_bytes(4, "big") + data[33:]


def write_manifest(folder: Path, rows: dict[str, str]) -> Path:
    m = folder / "manifest.csv"
    m.write_text("page_id,image_uri\n" + "".join(f'"{pid}","{uri}"\n' for pid, uri in rows.items()))
    return m


# What each bad input must become; None = read fine (status ok).
BAD = {
    "zero-byte": ("empty.png", b"", "empty_file"),
    "truncated-png": ("trunc.png", None, "corrupt_image"),
    "truncated-jpeg": ("trunc.jpg", None, "corrupt_image"),
    "text-as-jpg": ("notes.jpg", b"Chapter 1 notes, not a picture\n", "not_an_image"),
    "bomb": ("bomb.png", png_declaring(50_000, 50_000), "too_large"),
    "missing": ("missing.png", None, "missing_file"),
    "directory": ("a-folder.png", None, "is_directory"),
    "ftp": ("ftp://example.invalid/page.png", None, "unsupported_uri"),
    "engine-crash": ("sliver.png", encoded(Image.new("L", (40000, 2), 0), "PNG"), "engine"),
}


def build_inputs(folder: Path, comic_pages: Path) -> dict[str, str]:
    noise = Image.effect_noise((400, 300), 60)
    files = {
        "truncated-png": encoded(noise, "PNG")[:2000],
        "truncated-jpeg": encoded(noise.convert("RGB"), "JPEG")[:1500],
    }
    rows = {}
    for pid, (name, data, _) in BAD.items():
        if "://" in name:
            rows[pid] = name
            continue
        path = folder / name
        if pid == "directory":
            path.mkdir()
        elif pid != "missing":
            path.write_bytes(data if data is not None else files[pid])
        rows[pid] = str(path)
    frames = [Image.new("L", (300, 200), v) for v in (255, 0, 128)]
    odd = {
        "one-pixel": encoded(Image.new("RGB", (1, 1), "white"), "PNG"),
        "all-white": encoded(Image.new("L", (1200, 1700), 255), "PNG"),
        "cmyk": encoded(Image.new("CMYK", (600, 400), (0, 0, 0, 0)), "JPEG"),
        "16-bit": encoded(Image.new("I;16", (600, 400), 65535), "PNG"),
        "palette-alpha": encoded(Image.new("P", (600, 400), 0), "PNG", transparency=0),
        "webp": encoded(Image.new("RGB", (600, 400), "white"), "WEBP"),
    }
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    odd["animated-gif"] = buf.getvalue()
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    odd["multi-page-tiff"] = buf.getvalue()
    for pid, data in odd.items():
        (folder / f"{pid}.img").write_bytes(data)
        rows[pid] = str(folder / f"{pid}.img")
    for pid in ("comic-000", "comic-001"):
        rows[pid] = str(comic_pages / f"{pid}.png")
    return rows


def test_every_bad_image_gets_its_reason_and_the_good_pages_are_read(comic_pages, tmp_path, capsys):
    rows = build_inputs(tmp_path, comic_pages)
    manifest = write_manifest(tmp_path, rows)
    out = tmp_path / "ds"
    code = main(["ocr", "engine=tesseract", f"manifest={manifest}", f"out={out}", "batch=4", "progress=false"])
    captured = capsys.readouterr()
    assert code == 3
    assert f"{len(BAD)} failed" in captured.out and "rerun" in captured.out
    assert "unsupported URI scheme in 1 row(s)" in captured.err  # named up front

    got = {r["page_id"]: r for r in query(str(out), "select * from pages").iter_rows(named=True)}
    assert set(got) == set(rows)  # no page lost
    for pid, (_, _, kind) in BAD.items():
        assert got[pid]["status"] == "error" and got[pid]["error_kind"] == kind, got[pid]
        assert got[pid]["error"]
    assert "0 bytes" in got["zero-byte"]["error"]
    assert "2,500,000,000 pixels" in got["bomb"]["error"]
    assert "missing.png" in got["missing"]["error"]
    assert "text" in got["text-as-jpg"]["error"]
    ok = {pid for pid, r in got.items() if r["status"] == "ok"}
    assert ok == set(rows) - set(BAD)
    assert got["multi-page-tiff"]["width"] == 300 and got["animated-gif"]["n_elements"] == 0
    assert got["comic-000"]["n_elements"] > 20


def test_odd_page_ids_are_fine_and_never_place_files_outside_the_output(comic_pages, tmp_path):
    ids = ["vol 1/page 2", "../../escape", "ページ３", "a/../../b", "/abs/id"]
    rows = {pid: str(comic_pages / f"comic-00{i}.png") for i, pid in enumerate(ids)}
    out = tmp_path / "nested" / "ds"
    s = run_ocr(str(write_manifest(tmp_path, rows)), engine="tesseract", out=str(out), batch=2)
    assert s.ok == len(ids)
    assert sorted(query(str(out), "select page_id from pages")["page_id"]) == sorted(ids)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".parquet"]
    assert written and all(out in p.parents and p.name.startswith("part-") for p in written)


@pytest.mark.parametrize(
    "content, words",
    [
        ("page_id,image_uri\n", "no rows"),
        ("a,a.png\nb,b.png\n", "no 'page_id' column"),
        ("page_id,path\na,a.png\n", "no 'image_uri' column"),
        ("page_id,image_uri\na,a.png\na,b.png\n", "duplicated id"),
        ("page_id,image_uri\na,a.png\nb,\n", "null or empty"),
    ],
)
def test_bad_manifests_stop_before_any_work_with_exit_2(tmp_path, capsys, content, words):
    m = tmp_path / "m.csv"
    m.write_text(content)
    assert main(["ocr", "engine=tesseract", f"manifest={m}", f"out={tmp_path / 'ds'}"]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_a_batch_over_its_time_limit_is_recorded_and_a_rerun_completes(pages_copy, tmp_path):
    # No writer ever opens the FIFO: the worker reading it hangs until Lithops kills the call.
    target = pages_copy / "comic-004.png"
    good = tmp_path / "comic-004.png"
    shutil.move(target, good)
    os.mkfifo(target)
    out = str(tmp_path / "ds")
    # One page of plain Tesseract a call: a normal call takes about a second, well inside the 20 s limit.
    s = run_ocr(str(pages_copy / "manifest.csv"), engine="tesseract", out=out, batch=1, retries=0, call_timeout=20,
                layout="page")
    assert (s.ok, s.failed) == (5, 1) and s.error_kinds == {"batch_timeout": 1}
    assert "maximum time of 20 seconds" in s.examples[0]["error"]
    target.unlink()
    shutil.move(good, target)
    s = run_ocr(str(pages_copy / "manifest.csv"), engine="tesseract", out=out, batch=2, layout="page")
    assert (s.skipped, s.ok, s.failed) == (5, 1, 0)
    assert query(out, "select count(*) as n from pages where status = 'ok'")["n"][0] == 6


def test_two_runs_writing_the_same_output_at_once(comic_pages, tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "etl.cli", "ocr", "engine=tesseract", f"manifest={comic_pages / 'manifest.csv'}", f"out={out}",
           "batch=2", "workers=1", "progress=false"]
    runs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=600)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    files = list(out.rglob("*"))
    assert not [f for f in files if ".tmp-" in f.name]
    for f in files:
        if f.suffix == ".parquet":
            pq.read_table(f)  # every shard is whole
    con = connect(str(out))
    assert con.execute("select count(*), count(distinct page_id), count(*) filter (status = 'ok') from pages").fetchone() == (6, 6, 6)
    per_page = con.execute("select count(*) from (select page_id, level, reading_order from elements "
                           "group by all having count(*) > 1)").fetchone()[0]
    assert per_page == 0
    assert _pages_missing_elements(con) == 0


def _pages_missing_elements(con) -> int:
    """Pages whose n_elements differs from the element rows the views give them."""
    return con.execute(
        "select count(*) from pages p left join (select page_id, engine, count(*) n from elements group by all) e "
        "using (page_id, engine) where p.status = 'ok' and p.n_elements <> coalesce(e.n, 0)").fetchone()[0]


def test_two_writers_of_one_batch_interleaving_keep_each_page_with_its_elements(comic_pages, tmp_path, monkeypatch):
    """An orphaned runner and a rerun finishing the same batch: B writes its elements, A (a later
    reading) writes elements and pages, B writes its pages last. Shards named by batch alone then
    held A's elements and B's pages, and the views showed pages with n_elements > 0 and no elements."""
    import etl.run.worker as worker

    def task(run_id):
        return {"engine": "tesseract", "options": {"lang": "eng", "layout": "page"}, "out": str(tmp_path / "ds"),
                "run_id": run_id, "batch_id": "b1", "config_hash": "h", "extra_columns": [], "page_timeout": 120,
                "pages": [{"page_id": f"comic-00{i}", "image_uri": str(comic_pages / f"comic-00{i}.png"), "extra": {}}
                          for i in range(2)]}

    real_write = worker.storage.write_parquet_atomic
    pending = {"A": task("run-a")}

    def write(table, uri):
        if "/pages/" in uri and "run-b" in table.column("run_id").to_pylist() and pending:
            worker.process_batch(pending.pop("A"))  # A runs whole between B's elements and B's pages
        real_write(table, uri)

    monkeypatch.setattr(worker.storage, "write_parquet_atomic", write)
    worker.process_batch(task("run-b"))
    assert not pending
    con = connect(str(tmp_path / "ds"))
    assert con.execute("select count(*), min(n_elements) from pages").fetchone()[0] == 2
    assert con.execute("select min(n_elements) from pages").fetchone()[0] > 0
    assert _pages_missing_elements(con) == 0
    con.close()


def _read_as_nobody(path: str, queue) -> None:
    from etl.run.worker import _read

    os.setgid(65534)
    os.setuid(65534)
    try:
        _read(path)
        queue.put(("read", None))
    except InputError as exc:
        queue.put((exc.kind, str(exc)))


def test_permission_denied_is_a_readable_page_error(tmp_path):
    secret = tmp_path / "locked.png"
    secret.write_bytes(encoded(Image.new("L", (10, 10), 255), "PNG"))
    secret.chmod(0)
    tmp_path.chmod(0o755)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_as_nobody, args=(str(secret), queue))
    child.start()
    kind, message = queue.get(timeout=30)
    child.join(timeout=30)
    assert kind == "permission_denied" and "locked.png" in message


def test_two_runs_started_together_by_a_process_that_used_lithops_both_finish(tmp_path):
    """Children inherit Lithops' session variables: both runs once took one executor id, so one
    run's job file replaced the other's, and a run reported "4 ok" with no rows written."""
    from tools.synthetic import write_pages

    sets = {}
    for name, seed in (("a", 7301), ("b", 7302)):
        write_pages(tmp_path / name, 3, seed=seed, prefix=name)
        sets[name] = tmp_path / name / "manifest.csv"
    # This process uses Lithops first: its session id and executor counter are now in os.environ.
    assert run_ocr(str(sets["a"]), engine="tesseract", out=str(tmp_path / "warm-up"), layout="page", limit=1).ok == 1
    assert os.environ.get("__LITHOPS_SESSION_ID")
    runs = {
        name: subprocess.Popen([sys.executable, "-m", "etl.cli", "ocr", "engine=tesseract", f"manifest={m}", f"out={tmp_path / ('out-' + name)}",
                                "layout=page", "batch=1", "workers=1", "progress=false"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, m in sets.items()
    }
    outputs = {name: r.communicate(timeout=600)[0] for name, r in runs.items()}
    for name, r in runs.items():
        assert r.returncode == 0, outputs[name]
        got = query(str(tmp_path / f"out-{name}"), "select page_id, status, n_elements from pages")
        assert sorted(got["page_id"]) == [f"{name}-{i:03d}" for i in range(3)], outputs[name]
        assert set(got["status"]) == {"ok"} and min(got["n_elements"]) > 0


def test_a_call_reported_done_without_its_batchs_result_becomes_retried_not_a_crash(comic_pages, tmp_path, monkeypatch):
    """Lithops' ResponseFuture.result() hands back whatever it stored once a future counts as done:
    None, or another batch's report. The client checks each result against its task."""
    import etl.run.job as api

    real = api.process_batch

    def first_batch_reports_nothing(task):  # runs in the Lithops worker (forked from this process)
        return None if task.pages[0].page_id == "comic-000" else real(task)

    monkeypatch.setattr(api, "process_batch", first_batch_reports_nothing)
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=str(tmp_path / "ds"), layout="page", batch=3, retries=1)
    # comic-000's batch keeps coming back empty: after its retry it is an error row, not a crash or a silent "ok".
    assert (s.ok, s.failed) == (3, 3) and s.error_kinds == {"result_lost": 3}, s
    assert "instead of the worker's result" in s.examples[0]["error"]
    got = query(str(tmp_path / "ds"), "select page_id, status, error_kind from pages order by page_id")
    assert got.height == 6
    monkeypatch.setattr(api, "process_batch", real)
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=str(tmp_path / "ds"), layout="page", batch=3)
    assert (s.skipped, s.ok, s.failed) == (3, 3, 0)


def test_a_damaged_shard_is_named_left_out_and_a_rerun_repairs_the_dataset(comic_pages, tmp_path, capsys):
    out = tmp_path / "ds"
    manifest = str(comic_pages / "manifest.csv")
    assert run_ocr(manifest, engine="tesseract", out=str(out), layout="page", batch=2).ok == 6
    pages = sorted((out / "pages" / "engine=tesseract").glob("part-*.parquet"))
    elements = sorted((out / "elements" / "engine=tesseract").glob("part-*.parquet"))
    assert len(pages) == len(elements) == 3
    # A crashed copy: the page shard of one batch, the elements shard of another, cut short.
    for shard in (pages[0], elements[1]):
        shard.write_bytes(shard.read_bytes()[:300])
    assert main(["query", f"out={out}", "sql=select count(*) as n from pages"]) == 0
    captured = capsys.readouterr()
    assert pages[0].name in captured.err and elements[1].name in captured.err and "damaged" in captured.err
    assert "4" in captured.out  # the two sound page shards
    # The rerun sets both aside (with the page shard whose elements are gone) and reads those pages again.
    warnings = []
    s = run_ocr(manifest, engine="tesseract", out=str(out), layout="page", batch=2, on_warning=warnings.append)
    assert (s.skipped, s.ok, s.failed) == (2, 4, 0), s
    assert sum("set aside" in w for w in warnings) == 2 and any(elements[1].name in w for w in warnings)
    con = connect(str(out))
    assert con.execute("select count(*), count(*) filter (status = 'ok') from pages").fetchone() == (6, 6)
    mismatched = con.execute(
        "select count(*) from pages p left join (select page_id, count(*) n from elements group by page_id) e "
        "using (page_id) where p.n_elements <> coalesce(e.n, 0)").fetchone()[0]
    assert mismatched == 0
    con.close()
    assert len(list(out.rglob("*.parquet.damaged"))) == 3  # kept for whoever wants to look


def test_query_on_a_missing_dataset_is_a_usage_error(tmp_path, capsys):
    assert main(["query", f"out={tmp_path / 'nothing-here'}", "sql=select 1"]) == 2
    assert "no dataset" in capsys.readouterr().err


def test_an_output_that_cannot_be_written_is_refused_before_any_ocr(comic_pages, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # out= under a regular file: ENOTDIR on every write
    code = main(["ocr", "engine=tesseract", f"manifest={comic_pages / 'manifest.csv'}", f"out={blocker / 'ds'}",
                 "progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the dataset" in err and "NotADirectoryError" in err, err
    started = []
    with pytest.raises(ConfigError, match="cannot write the dataset"):
        run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=str(blocker / "ds"), on_start=started.append)
    assert not started  # refused before planning, so before any OCR


def test_a_percent_encoded_file_uri_is_read_and_a_symlink_loop_is_a_lasting_error(comic_pages, tmp_path):
    named = tmp_path / "ページ 1.png"  # Path.as_uri() writes it percent-encoded
    shutil.copy(comic_pages / "comic-000.png", named)
    loop = tmp_path / "loop.png"
    os.symlink(loop, loop)
    manifest = write_manifest(tmp_path, {"encoded": named.as_uri(), "loop": str(loop)})
    assert "%E3%83" in named.as_uri()
    s = run_ocr(str(manifest), engine="tesseract", out=str(tmp_path / "ds"), layout="page")
    assert (s.ok, s.failed) == (1, 1) and s.error_kinds == {"symlink_loop": 1}, s


def lithops_job_files() -> set[str]:
    """Lithops' localhost job files and job marks (what an interrupted run used to leave)."""
    from lithops.constants import JOBS_DIR, JOBS_PREFIX, LITHOPS_TEMP_DIR

    return {str(p) for p in Path(LITHOPS_TEMP_DIR).glob(f"*/{JOBS_PREFIX}/*-job.json")} | {
        str(p) for p in Path(JOBS_DIR).glob("*.done")}


def test_ctrl_c_says_what_was_written_and_how_to_resume(comic_pages, tmp_path):
    import signal

    out = tmp_path / "ds"
    before = lithops_job_files()
    run = subprocess.Popen([sys.executable, "-m", "etl.cli", "ocr", "engine=tesseract", f"manifest={comic_pages / 'manifest.csv'}",
                            f"out={out}", "layout=page", "batch=1", "workers=1", "progress=false"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in run.stdout:  # the first batch is written: interrupt
        lines.append(line)
        if line.startswith("batch "):
            run.send_signal(signal.SIGINT)
            break
    rest = run.communicate(timeout=120)[0]
    output = "".join(lines) + rest
    assert run.returncode == 130, output
    assert "interrupted:" in output and "rerun the same command to resume" in output and "Traceback" not in output
    assert lithops_job_files() - before == set()  # no job file left behind
    done = query(str(out), "select count(*) as n from pages")["n"][0]
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=str(out), layout="page")
    assert s.skipped == done >= 1 and s.ok == 6 - done


def test_runs_with_other_options_in_one_output_stay_apart(comic_pages, tmp_path):
    manifest, out = str(comic_pages / "manifest.csv"), str(tmp_path / "ds")
    assert run_ocr(manifest, engine="tesseract", out=out, layout="page", limit=2).ok == 2
    # The same pages with other options, all failing (Tesseract's own time limit far too short):
    # the first run's successes once hid these failures from `pages` and sql/errors.sql.
    s = run_ocr(manifest, engine="tesseract", out=out, layout="page", timeout=0.001, limit=2)
    assert (s.ok, s.failed) == (0, 2) and s.error_kinds == {"timeout": 2}, s
    con = connect(out)
    assert con.execute("select count(*), count(distinct config_hash) from pages").fetchone() == (4, 2)
    assert con.execute("select count(*), count(distinct config_hash) from page_text").fetchone() == (2, 1)
    errors = con.execute((REPO / "sql" / "errors.sql").read_text()).fetchall()
    assert [e[:4] for e in errors] == [("tesseract", s.config_hash, "timeout", 2)]
    con.close()


def test_a_page_deadline_swallowed_by_library_code_still_ends_the_page():
    """Library code that catches every exception (a broad `except` in a model's pre-processing)
    once let an over-time page finish as a success."""
    import time

    from etl.errors import PageTimeout
    from etl.run.worker import deadline

    with pytest.raises(PageTimeout, match="page_timeout=0.1"):
        with deadline(0.1):
            for _ in range(20):
                try:
                    time.sleep(0.05)
                except Exception:  # swallows the alarm's PageTimeout and carries on
                    pass


def test_a_client_killed_with_sigkill_leaves_no_runner_reading_on_alone(comic_pages, tmp_path):
    """Lithops' localhost runner outlives its client: killed with SIGKILL, the client used to leave it
    reading the whole job, beside the user's rerun. The workers now stop when the client is gone."""
    import signal
    import time

    import psutil
    from lithops.constants import LITHOPS_TEMP_DIR  # this test process's own (conftest)

    out = tmp_path / "ds"
    started = time.time()
    run = subprocess.Popen([sys.executable, "-m", "etl.cli", "ocr", "engine=tesseract", f"manifest={comic_pages / 'manifest.csv'}",
                            f"out={out}", "layout=page", "batch=1", "workers=1", "progress=false"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in run.stdout:  # the first batch is written: kill the client, no chance to clean up
        if line.startswith("batch "):
            run.send_signal(signal.SIGKILL)
            break
    run.wait(timeout=60)

    def pages_written() -> int:
        return len(list((out / "pages").rglob("*.parquet")))

    at_kill = pages_written()

    def runners() -> list:  # the client's Lithops job processes (their own session: not its children)
        found = []
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "run_job" in cmd and LITHOPS_TEMP_DIR in cmd and (proc.info["create_time"] or 0) >= started - 1:
                found.append(proc)
        return found

    # Awaited, not slept: the orphaned runner ends (left alone it read all 6 pages, about 3 s a page).
    gone, alive = psutil.wait_procs(runners(), timeout=60)
    assert not alive, alive
    after = pages_written()
    assert after <= at_kill + 1, (at_kill, after)  # at most the page in flight when the client died
    s = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=str(out), layout="page")
    assert s.skipped == after and s.ok == 6 - after and s.all_ok
    con = connect(str(out))
    assert con.execute("select count(*) from pages where status = 'ok'").fetchone()[0] == 6
    con.close()


def test_a_manifest_column_whose_type_changes_between_runs_keeps_the_dataset_queryable(comic_pages, tmp_path):
    """Run 1's manifest has `volume` as a number, `published` as a date and `tags` as a list; run 2's
    has them as text, a number and text. DuckDB cannot unite a date with a number, or a list with
    text, across shards: every `select *` on `pages` failed."""
    import datetime

    import polars as pl

    page = str(comic_pages / "comic-000.png")
    pl.DataFrame({"page_id": ["a"], "image_uri": [page], "volume": [1], "published": [datetime.date(2020, 1, 2)],
                  "tags": [["shonen", "b&w"]]}).write_parquet(tmp_path / "one.parquet")
    pl.DataFrame({"page_id": ["b"], "image_uri": [page], "volume": ["vol-2"], "published": [2021],
                  "tags": ["colour"]}).write_parquet(tmp_path / "two.parquet")
    out = str(tmp_path / "ds")
    for manifest in ("one.parquet", "two.parquet"):
        assert run_ocr(str(tmp_path / manifest), engine="tesseract", out=out, layout="page").all_ok
    rows = {r["page_id"]: r for r in query(out, "select * from pages").iter_rows(named=True)}
    assert rows["a"]["volume"] == "1" and rows["b"]["volume"] == "vol-2"
    assert rows["a"]["published"] == "2020-01-02" and rows["b"]["published"] == "2021"
    assert json.loads(rows["a"]["tags"]) == ["shonen", "b&w"] and rows["b"]["tags"] == "colour"


@pytest.fixture
def full_tmpdir(tmp_path):
    """A 256 KB file system (tmpfs, mounted by root as CI runs) to point TMPDIR at."""
    mnt = tmp_path / "small-tmp"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "filler").write_bytes(b"\0" * 160_000)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_tmpdir_is_refused_before_any_work_not_a_traceback(comic_pages, tmp_path, full_tmpdir):
    """Lithops copies its package, job files and results under TMPDIR before any call runs; with
    little room there the run ended in a 60-line shutil traceback."""
    env = {**os.environ, "TMPDIR": str(full_tmpdir)}
    done = subprocess.run([sys.executable, "-m", "etl.cli", "ocr", "engine=tesseract", f"manifest={comic_pages / 'manifest.csv'}",
                           f"out={tmp_path / 'ds'}", "progress=false"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "working folder" in done.stderr and "TMPDIR" in done.stderr, done.stderr
    assert not list((tmp_path / "ds").rglob("*.parquet"))


def test_a_full_output_disk_is_not_retried_and_a_rerun_after_freeing_it_completes(comic_pages, tmp_path):
    """ENOSPC (or EROFS, ENOTDIR) on the shards is not a blip: each retry read every page again only
    to fail the same way. The batch is reported at once, and the summary says why."""
    mnt = tmp_path / "small-out"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (256 - 12) * 1024)  # room for the up-front probe, not for a batch
        out = str(mnt / "ds")
        s = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=out, limit=2, batch=2, retries=2)
        assert (s.ok, s.failed, s.calls_retried) == (0, 2, 0), s
        # Its error rows are written where they fit (output_unwritable), else counted as not recorded.
        assert set(s.error_kinds) <= {"output_unwritable", "not_recorded"}, s.error_kinds
        assert "OutputUnwritable" in s.examples[0]["error"] and "[Errno 28]" in s.examples[0]["error"], s.examples
        filler.unlink()
        again = run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=out, limit=2, batch=2)
        assert (again.ok, again.skipped, again.calls_retried) == (2, 0, 0), again
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_pages_read_before_a_call_is_killed_are_kept(pages_copy, tmp_path):
    """A call killed at its time limit (or for memory) lost every page it had read. Workers now write
    every `checkpoint` pages: the finished chunks stand, and only the rest become error rows."""
    target = pages_copy / "comic-004.png"  # the fifth page of six: a FIFO nobody writes, so the read hangs
    good = tmp_path / "comic-004.png"
    shutil.move(target, good)
    os.mkfifo(target)
    out = str(tmp_path / "ds")
    s = run_ocr(str(pages_copy / "manifest.csv"), engine="tesseract", out=out, batch=6, checkpoint=2, retries=0,
                call_timeout=20, layout="page")  # 4 pages of plain Tesseract take a few seconds
    assert (s.ok, s.failed) == (4, 2) and s.error_kinds == {"batch_timeout": 2}, s
    status = dict(query(out, "select page_id, status from pages").iter_rows())
    assert status == {**{f"comic-00{i}": "ok" for i in range(4)}, "comic-004": "error", "comic-005": "error"}
    con = connect(out)
    assert con.execute("select count(*) from pages p where n_elements = (select count(*) from elements e "
                       "where e.page_id = p.page_id) and status = 'ok'").fetchone()[0] == 4
    con.close()
    target.unlink()
    shutil.move(good, target)
    again = run_ocr(str(pages_copy / "manifest.csv"), engine="tesseract", out=out, layout="page")
    assert (again.skipped, again.ok, again.failed) == (4, 2, 0)
