"""The faults of issue #35, each on the real pipeline (Lithops localhost, Tesseract, Parquet, DuckDB):
runs too large for one Lithops job, damaged index files, bad API answers, odd HTTP bodies, name
clashes, unsafe export names, budgets, stalled reads and hostile search input."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


# 1. Runs of any size start -------------------------------------------------------------------------

@pytest.fixture
def count_items(tmp_path, monkeypatch):
    """A call's work in the executor tests, in a module the Lithops runner can import."""
    (tmp_path / "probe_count.py").write_text("def count_items(items):\n    return len(items)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the runner inherits it and unpickles the probe
    from probe_count import count_items

    return count_items



def test_calls_whose_data_passes_one_lithops_job_go_in_several_jobs(count_items):
    """Lithops refuses a job whose call data passes 4 MiB: 30 calls of 300 kB each once failed
    before any work ("Total data exceeded maximum size of 4.0MiB")."""
    from etl.run.executor import LithopsExecutor, load_config

    # Lists of 300,000 small numbers (~600 kB pickled); the call counts them.
    tasks = [[i % 200] * 300_000 for i in range(30)]
    results = list(LithopsExecutor(load_config(None, None, 2)).map(count_items, tasks))
    assert sorted((i, r, e) for i, r, e in results) == [(i, 300_000, None) for i in range(30)]


def test_a_call_too_large_for_any_job_is_reported_and_the_others_run(count_items):
    from etl.run.executor import LithopsExecutor, TooLarge, load_config

    tasks = [[1] * 10, [2] * 2**20, [3] * 10]  # the second: ~2 MiB pickled, a job may carry 2 MiB
    results = {i: (r, e) for i, r, e in LithopsExecutor(load_config(None, None, 1)).map(count_items, tasks)}
    assert results[0] == (10, None) and results[2] == (10, None)
    assert isinstance(results[1][1], TooLarge) and "batch=" in str(results[1][1])


def test_a_100k_page_manifest_plans_and_starts(tmp_path):
    """A run past ~30,000 pages exited 1 before any work. Missing files keep each page cheap: the
    test waits for the first batch's rows, then interrupts (as a user would) and checks them."""
    n = 100_000
    manifest = tmp_path / "m.csv"
    pl.DataFrame({"page_id": [f"vol{i // 200:03d}/p{i % 200:03d}" for i in range(n)],
                  "image_uri": [str(tmp_path / "gone" / f"{i}.png") for i in range(n)]}).write_csv(manifest)
    out = tmp_path / "ds"
    run = subprocess.Popen([sys.executable, "-m", "etl.cli", "ocr", "engine=tesseract", f"manifest={manifest}",
                            f"out={out}", "workers=2", "progress=false"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in run.stdout:
        lines.append(line)
        if line.startswith("batch "):
            run.send_signal(signal.SIGINT)
            break
    output = "".join(lines) + run.communicate(timeout=120)[0]
    assert run.returncode == 130, output
    assert "100000 pages" in output and "exceeded" not in output and "Traceback" not in output, output
    from etl.dataset.views import connect

    con = connect(str(out))
    kinds = con.execute("select error_kind, count(*) from pages group by 1").fetchall()
    con.close()
    assert kinds and kinds[0][0] == "missing_file" and len(kinds) == 1, kinds


# 3 and 7. Bad API answers and budgets --------------------------------------------------------------

QWEN_PRICE = {"prompt": 0.25, "completion": 0.75}  # costs.yaml's price for the stand-in's model, USD per million


@pytest.fixture
def fake(comic_pages, monkeypatch):
    from fake_vlm import FakeVLM

    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-FAULTTEST-0123456789")
    with FakeVLM.of_folder(comic_pages) as server:
        yield server


def billed_usd(requests) -> float:
    """What the stand-in says it billed, request by request (where it said anything believable)."""
    return sum((r["usage"]["prompt_tokens"] * QWEN_PRICE["prompt"] + r["usage"]["completion_tokens"]
                * QWEN_PRICE["completion"]) / 1e6 for r in requests if isinstance((r.get("usage") or {}).get("prompt_tokens"), int))


def test_one_bad_answer_fails_at_most_its_page_and_is_sent_once(comic_pages, fake, tmp_path):
    """A lone surrogate in the text, 10^12 tokens or "prompt_tokens": "lots" failed the whole batch,
    and Lithops sent every request of it three times more; with a budget the worker hung."""
    from etl.dataset.views import connect
    from etl.run.job import run_ocr

    pages = sorted(p.stem for p in comic_pages.glob("*.png"))
    faults = {pages[0]: ("surrogate",), pages[1]: ("usage", {"prompt_tokens": 10**12, "completion_tokens": 5}),
              pages[2]: ("usage", {"prompt_tokens": "lots", "completion_tokens": 1})}
    fake.fault = lambda pid, attempt: faults.get(pid)
    for budget, out in ((None, tmp_path / "plain"), (1.0, tmp_path / "budget")):
        before = len(fake.requests)
        s = run_ocr(str(comic_pages / "manifest.csv"), "qwen", str(out), base_url=fake.base_url, batch=6,
                    max_cost_usd=budget, call_timeout=120)
        assert (s.ok, s.failed, s.failed_batches, s.calls_retried) == (6, 0, 0, 0), s
        assert len(fake.requests) - before == 6  # each page sent once
        con = connect(str(out))
        rows = {r[0]: r[1:] for r in con.execute(
            "select page_id, text, prompt_tokens, cost_usd from pages where engine = 'qwen'").fetchall()}
        con.close()
        assert "\ufffd" in rows[pages[0]][0]
        for bad in pages[1:3]:  # tokens not believable: not stored; billed at the request's bound
            assert rows[bad][1] is None and 0 < rows[bad][2] < 0.05, rows[bad]


def test_a_budget_is_never_passed_whatever_the_api_reports(comic_pages, fake, tmp_path):
    """Answers without usage spent uncounted ("$0.0000 spent" after 12 paid pages); negative usage
    counted as negative spend; dearer requests later in a run overspent the reservation."""
    from etl.run.job import run_ocr

    manifest = str(comic_pages / "manifest.csv")
    rising = iter(range(1, 100))
    cases = {
        "no usage": lambda pid, attempt: ("usage", None),
        "negative": lambda pid, attempt: ("usage", {"prompt_tokens": -10**6, "completion_tokens": -10**6}),
        # each answer dearer than the one before (300 prompt tokens more each time, as a page can cost)
        "rising": lambda pid, attempt: ("usage", lambda u: {**u, "prompt_tokens": u["prompt_tokens"] + 300 * next(rising)}),
    }
    budget = 0.004
    for name, fault in cases.items():
        fake.fault, before = fault, len(fake.requests)
        s = run_ocr(manifest, "qwen", str(tmp_path / name.replace(" ", "-")), base_url=fake.base_url, max_side=800,
                    max_tokens=400, max_cost_usd=budget, batch=2)
        sent = fake.requests[before:]
        assert s.ok == len(sent) and s.ok + s.pending == 6 and s.pending > 0, (name, s)
        assert 0 < s.cost_usd <= budget, (name, s.cost_usd)  # counted, and never past the budget
        assert billed_usd(sent) <= s.cost_usd + 1e-12, name  # what the API billed is within what was counted


# 4 and 8. Image reads over HTTP -----------------------------------------------------------------------

def page_server(folder: Path, stall_s: float = 30):
    """Pages of `folder` over HTTP: `/chunked/NAME` sent in 4 KiB chunks without a Content-Length
    (as many servers and CDNs do), `/stalled/NAME` never answering within `stall_s`."""
    import time
    from http.server import BaseHTTPRequestHandler

    from test_s3 import serving

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def do_GET(self):
            kind, name = self.path.strip("/").split("/", 1)
            if kind == "stalled":
                time.sleep(stall_s)
            data = (folder / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 4096):
                piece = data[i:i + 4096]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    return serving(Handler)


def test_a_png_sent_in_chunks_without_a_length_is_read_whole(comic_pages, tmp_path):
    """Read to its end within max_bytes: it was cut at 8 KiB and recorded `corrupt_image`."""
    from etl.run.job import run_ocr

    with page_server(comic_pages) as base:
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"page_id,image_uri\ncomic-000,{base}/chunked/comic-000.png\n")
        s = run_ocr(str(manifest), engine="tesseract", out=str(tmp_path / "ds"), layout="page")
        assert (s.ok, s.failed) == (1, 0), s.examples
        small = run_ocr(str(manifest), engine="tesseract", out=str(tmp_path / "small"), layout="page", max_bytes=20_000)
        assert small.error_kinds == {"too_large": 1}  # and the limit still holds with no length to go by


def test_page_timeout_bounds_an_api_engines_image_read(comic_pages, fake, tmp_path):
    """API engines read pages in threads, where no alarm reaches: a stalled URL held its batch until
    the call's limit (`batch_timeout`), and its batch-mates, read, were lost with it."""
    import time

    from etl.run.job import run_ocr

    with page_server(comic_pages) as base:
        manifest = tmp_path / "m.csv"
        manifest.write_text("page_id,image_uri\n" + "".join(
            f"{n},{base}/{kind}/{n}.png\n" for n, kind in (("comic-000", "chunked"), ("comic-001", "stalled"),
                                                          ("comic-002", "chunked"))))
        started = time.monotonic()
        s = run_ocr(str(manifest), "qwen", str(tmp_path / "ds"), base_url=fake.base_url, batch=3, page_timeout=3,
                    call_timeout=25)
        assert time.monotonic() - started < 25
    assert (s.ok, s.failed, s.failed_batches) == (2, 1, 0), s
    assert s.error_kinds == {"timeout": 1} and "page_timeout=3" in s.examples[0]["error"]


# 5. Manifest columns never clash with the views' own ----------------------------------------------

def test_manifest_columns_named_like_the_views_own_are_kept_apart(comic_pages, tmp_path):
    """A manifest column `_rank` emptied `pages` and `best_text` (the views rank rows by that name)."""
    import re

    from etl.dataset.schema import PAGE_COLUMNS, VIEW_COLUMNS
    from etl.dataset.views import SQL_DIR, connect
    from etl.run.job import run_ocr

    manifest = tmp_path / "m.csv"
    manifest.write_text("page_id,image_uri,_rank,engines,series\n" + "".join(
        f"comic-00{i},{comic_pages / f'comic-00{i}.png'},{9 - i},x,s{i}\n" for i in range(2)))
    warnings: list[str] = []
    s = run_ocr(str(manifest), engine="tesseract", out=str(tmp_path / "ds"), layout="page", on_warning=warnings.append)
    assert s.ok == 2 and any("'manifest__rank'" in w for w in warnings), warnings
    con = connect(str(tmp_path / "ds"))
    assert con.execute("select count(*) from pages").fetchone()[0] == 2
    assert con.execute("select count(*) from best_text").fetchone()[0] == 2
    assert sorted(con.execute("select manifest__rank, manifest_engines, series from pages").fetchall()) == [
        ("8", "x", "s1"), ("9", "x", "s0")]  # extras are kept as text
    con.close()
    # Every name the views compute is one a manifest column is kept apart from.
    computed = set(re.findall(r"\bAS ([a-z_]+)\b", (SQL_DIR / "views.sql").read_text())) - {n for n, _ in PAGE_COLUMNS}
    assert computed <= VIEW_COLUMNS, computed - VIEW_COLUMNS


# 6. Exports: unique, safe, bounded names; valid documents ---------------------------------------

def test_exports_keep_every_page_inside_dest_in_valid_documents(comic_pages, fake, tmp_path):
    """Page ids `a/b`, `a_b`, `a b` became one file (pages lost while the count said otherwise); a
    volume `..` wrote above dest=; a 300-character volume crashed mid-export; NUL and control
    characters and NaN boxes gave invalid ALTO, hOCR and JSON."""
    from lxml import etree

    from etl.read.export import FORMATS, export
    from etl.run.job import run_ocr
    from schemas import alto_schema

    rows = [("a/b", "comic-000", ".."), ("a_b", "comic-001", ".."), ("a b", "comic-002", "v" * 300),
            ("odd", "comic-003", "x")]
    manifest = tmp_path / "m.csv"
    pl.DataFrame({"page_id": [r[0] for r in rows], "image_uri": [str(comic_pages / f"{r[1]}.png") for r in rows],
                  "volume": [r[2] for r in rows]}).write_csv(manifest)
    odd = ('[{"bbox_2d": [10, 10, 200, 40], "text": "NUL\\u0000 ESC\\u001b[31m BEL\\u0007 FFFE\\ufffe"}, '
           '{"bbox_2d": [NaN, 10, 200, 40], "text": "a NaN box"}, {"bbox_2d": [10, 50, 200, 90], "text": "fine"}]')
    fake.fault = lambda pid, attempt: ("raw", odd) if pid == "comic-003" else None
    out = str(tmp_path / "ds")
    assert run_ocr(str(manifest), "qwen", out, base_url=fake.base_url).ok == 4

    def never(constant):  # NaN and Infinity are not JSON: a strict parser refuses them
        raise ValueError(f"{constant} in a JSON export")

    for fmt in FORMATS:
        dest = tmp_path / "exports" / fmt
        s = export(out, fmt, str(dest))
        assert s.pages == 4
        written = [p for p in (tmp_path / "exports").rglob("*") if p.is_file()]
        assert all(dest in p.parents for p in written if fmt in p.parts), written  # nothing above dest
        assert all(len(part) <= 100 for p in written for part in p.relative_to(dest.parent).parts)
        files = [p for p in dest.rglob("*") if p.is_file()]
        if fmt in ("alto", "hocr"):
            assert len(files) == 4  # one document a page, none written over another
            for f in files:
                doc = etree.parse(str(f))  # well-formed XML
                if fmt == "alto":
                    alto_schema().assertValid(doc)
        else:
            for f in files:
                text = f.read_text()
                for part in (text.splitlines() if fmt == "jsonl" else [text]):
                    json.loads(part, parse_constant=never)
        if fmt == "mokuro":
            assert len(files) == 3 and sum(len(json.loads(f.read_text())["pages"]) for f in files) == 4


# 2 and 9. Damaged index files; search under concurrency, read-only, hostile input ------------------

@pytest.fixture(scope="module")
def read_set(comic_pages, tmp_path_factory) -> Path:
    """Six pages read by Tesseract, a batch each (six shards), with embeddings and a search index."""
    from etl.read.embed import embed_pages
    from etl.read.search import refresh_index
    from etl.run.job import run_ocr

    out = tmp_path_factory.mktemp("read") / "ds"
    assert run_ocr(str(comic_pages / "manifest.csv"), engine="tesseract", out=str(out), layout="page", batch=1).ok == 6
    embed_pages(str(out))
    assert refresh_index(str(out)).indexed == 6
    return out


def dataset_copy(read_set: Path, folder: Path) -> Path:
    import shutil

    return Path(shutil.copytree(read_set, folder / "ds"))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def a_word_of(out: Path, page: str = "comic-002") -> str:
    from etl.dataset.views import connect

    con = connect(str(out))
    text = con.execute("select text from page_text where page_id = ?", [page]).fetchone()[0]
    con.close()
    return max(text.split(), key=len)


def test_a_truncated_embeddings_or_index_file_is_set_aside_and_rebuilt(read_set, tmp_path):
    """One truncated file under embeddings/ or _search/ made search, export, embed and query fail
    with a DuckDB traceback."""
    from etl.cli import main
    from etl.dataset.views import connect
    from etl.read.embed import embed_pages
    from etl.read.export import export
    from etl.read.search import INDEX_DIR, search

    out = dataset_copy(read_set, tmp_path)
    word = a_word_of(out)
    [vectors] = list((out / "embeddings").rglob("*.parquet"))
    index = sorted((out / INDEX_DIR).rglob("*.parquet"))
    truncate(vectors)
    truncate(index[0])
    warnings: list[str] = []
    hits = search(str(out), word, on_warning=warnings.append)
    assert "comic-002" in hits["page_id"].to_list()
    assert any("search index file damaged, built again" in w for w in warnings), warnings
    import pyarrow.parquet as pq

    pq.read_metadata(index[0])  # rebuilt whole
    warned: list[str] = []
    con = connect(str(out), on_warning=warned.append)
    assert con.execute("select count(*) from embeddings").fetchone()[0] == 0  # the damaged file left out
    con.close()
    assert any("damaged embeddings file left out" in w for w in warned), warned
    assert export(str(out), "jsonl", str(tmp_path / "exp")).pages == 6
    assert embed_pages(str(out)) == 6  # writes its file anew
    con = connect(str(out))
    assert con.execute("select count(*) from embeddings").fetchone()[0] == 6
    con.close()
    assert main(["query", f"out={out}", "sql=select count(*) from embeddings"]) == 0


def _search_at_once(out: str, word: str, barrier, results) -> None:
    import duckdb  # noqa: F401  (everything a search imports, imported before the start)
    import polars  # noqa: F401

    import etl.dataset.views  # noqa: F401
    from etl.read.search import search

    barrier.wait(timeout=120)  # every search starts together: each lists the index, then drops what is stale
    try:
        results.put(("ok", search(out, word)["page_id"].to_list()))
    except BaseException as exc:
        results.put(("crash", f"{type(exc).__name__}: {exc}"))


def test_concurrent_searches_after_shards_were_removed_all_answer(read_set, tmp_path):
    """Two searches refreshing an index whose shards were removed both dropped the same index files:
    one crashed (FileNotFoundError), or read a file the other had just removed."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fresh interpreters (Polars' and DuckDB's threads do not fork)
    for attempt in range(2):  # a race: two rounds of six searches, each round on a fresh copy
        out = dataset_copy(read_set, tmp_path / str(attempt))
        for table in ("pages", "elements"):  # the user removes three batches' shards
            for shard in sorted((out / table).rglob("*.parquet"))[:3]:
                shard.unlink()
        kept = sorted(pq.read_table(next((out / "pages").rglob("*.parquet")))["page_id"].to_pylist())[0]
        word = a_word_of(out, kept)
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_search_at_once, args=(str(out), word, barrier, results)) for _ in range(6)]
        for proc in procs:
            proc.start()
        found = [results.get(timeout=300) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert all(kind == "ok" and kept in pages for kind, pages in found), found


def test_a_read_only_dataset_can_be_searched(read_set, tmp_path):
    """The index could not be written, so search failed: it now indexes in memory what it lacks."""
    from etl.read.search import INDEX_DIR, search

    out = dataset_copy(read_set, tmp_path)
    import shutil

    shutil.rmtree(out / INDEX_DIR)  # nothing indexed yet, and nothing can be written
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(out), str(mount)], check=True)
    try:
        with pytest.raises(OSError):
            (mount / "probe").write_text("x")  # read-only indeed, even for root
        warnings: list[str] = []
        hits = search(str(mount), a_word_of(out), on_warning=warnings.append)
        assert "comic-002" in hits["page_id"].to_list()
        assert any("cannot be saved" in w for w in warnings), warnings
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_where_is_one_condition_never_several_statements(read_set, tmp_path):
    """`where=` ran whatever it held: a COPY after a `;` wrote a file."""
    from etl.cascade.estimate import estimate_cascade
    from etl.errors import UsageError
    from etl.run.job import run_ocr

    written = tmp_path / "written.csv"
    for where in (f"true; COPY (SELECT 1) TO '{written}'",
                  f"true) GROUP BY page_id; COPY (SELECT 1) TO '{written}'; SELECT page_id FROM pages WHERE (true",
                  "true) -- the rest of the query"):
        with pytest.raises(UsageError, match="not one SQL condition"):
            run_ocr(engine="tesseract", out=str(tmp_path / "again"), from_=str(read_set), where=where, layout="page")
        with pytest.raises(UsageError, match="not one SQL condition"):
            estimate_cascade(100, ["tesseract", "ppocrv6"], when=where, out=str(read_set))
    assert not written.exists()
    ok = run_ocr(engine="tesseract", out=str(tmp_path / "again"), from_=str(read_set), where="page_id = 'comic-001'",
                 layout="page")
    assert ok.ok == 1


def test_credentials_in_base_url_are_refused_unshown(comic_pages, tmp_path):
    """A user:password@ or ?api_key= in base_url was stored in every page's engine_version and logged."""
    from etl.errors import ConfigError
    from etl.run.job import run_ocr

    for url in ("http://reader:hunter2-s3cret@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?api_key=sk-hunter2-s3cret"):
        with pytest.raises(ConfigError) as refused:
            run_ocr(str(comic_pages / "manifest.csv"), "qwen", str(tmp_path / "ds"), base_url=url)
        assert "hunter2" not in str(refused.value) and "api_key_env" in str(refused.value)
        done = subprocess.run([sys.executable, "-m", "etl.cli", "ocr", f"manifest={comic_pages / 'manifest.csv'}",
                               "engine=qwen", f"base_url={url}", f"out={tmp_path / 'ds'}"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "hunter2" not in done.stdout + done.stderr
    assert not (tmp_path / "ds").exists()


def test_escape_sequences_in_read_text_never_reach_the_terminal(comic_pages, fake, tmp_path):
    """Text a model returns (or a page holds) was printed raw: an OSC sequence could retitle the
    terminal or write its clipboard, a CSI one hide or rewrite lines."""
    evil = "PWNED \x1b]0;owned\x07 \x1b[2J \x9b31m \u202eTXT"
    fake.fault = lambda pid, attempt: ("raw", json.dumps([{"bbox_2d": [10, 10, 300, 40], "text": evil}]))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"page_id,image_uri\ncomic-000,{comic_pages / 'comic-000.png'}\n")
    out = tmp_path / "ds"
    runs = [["ocr", "engine=qwen", f"manifest={manifest}", f"out={out}", f"base_url={fake.base_url}", "progress=false"],
            ["search", f"out={out}", "q=pwned"],
            ["query", f"out={out}", "sql=select page_id, text from page_text"]]
    for args in runs:
        done = subprocess.run([sys.executable, "-m", "etl.cli", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env={**__import__("os").environ, "OPENROUTER_API_KEY": "sk-or-v1-ESCAPE-0123456789"})
        shown = done.stdout + done.stderr
        assert done.returncode == 0 and "PWNED" in shown, shown
        for raw in ("\x1b]", "\x1b[2J", "\x9b", "\x07", "\u202e"):
            assert raw not in shown, (args[0], raw)
        assert "\\x1b]0;owned" in shown  # shown spelled out


def test_a_huge_rgba_page_is_decoded_without_four_copies_of_itself(tmp_path):
    """A 9999 x 9999 RGBA PNG peaked at about 2 GB a worker (a white RGBA page, the composite, RGB)."""
    probe = ("import json, resource, sys\n"
             "from PIL import Image, ImageDraw\n"
             "from etl.run.images import decode\n"
             "from etl.run.worker import _read\n"
             "path = sys.argv[1]\n"
             "im = Image.new('RGBA', (9999, 9999), (0, 0, 0, 0))\n"
             "ImageDraw.Draw(im).rectangle((4000, 4000, 6000, 6000), fill=(10, 20, 30, 255))\n"
             "im.save(path, compress_level=1)\n"
             "del im\n"
             "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
             "img = decode(_read(path))\n"
             "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
             "print(json.dumps([img.mode, img.getpixel((5, 5)), img.getpixel((5000, 5000)), base, peak]))\n")
    # The generator's own peak (its RGBA page) comes first: the decode is measured past it.
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "big.png")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    mode, paper, ink, base, peak = json.loads(done.stdout)
    assert (mode, paper, ink) == ("RGB", [255, 255, 255], [10, 20, 30])  # transparent is paper; ink kept
    assert peak < 1100, (base, peak)  # the decoded RGBA page (400 MB) and its RGB result (300 MB)


def test_a_rerun_never_pays_again_for_what_a_killed_clients_calls_still_read(comic_pages, fake, tmp_path):
    """A client killed mid-run leaves paid requests in flight; the rerun sent them again (paid twice)."""
    import os
    import time

    from etl.run.job import run_ocr

    fake.fault = lambda pid, attempt: ("slow", 3)  # each answer takes 3 s: the kill finds requests in flight
    out = tmp_path / "ds"
    args = [sys.executable, "-m", "etl.cli", "ocr", "engine=qwen", f"manifest={comic_pages / 'manifest.csv'}",
            f"out={out}", f"base_url={fake.base_url}", "batch=6", "progress=false"]
    client = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "OPENROUTER_API_KEY": "sk-or-v1-KILLED-0123456789"})
    deadline = time.monotonic() + 120
    while not fake.requests and time.monotonic() < deadline:  # awaited, not slept: the first request arrives
        time.sleep(0.05)
    assert fake.requests, "the killed run never sent a request"
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=60)
    in_flight = {r["page"] for r in fake.requests}
    warnings: list[str] = []
    s = run_ocr(str(comic_pages / "manifest.csv"), "qwen", str(out), base_url=fake.base_url, batch=6,
                on_warning=warnings.append)
    assert s.ok + s.skipped == 6 and s.skipped >= len(in_flight), s
    assert sorted(fake.attempts.values()) == [1] * 6, dict(fake.attempts)  # every page sent once, none twice
    assert any("waiting for" in w and "pay twice" in w for w in warnings), warnings
