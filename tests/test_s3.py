"""Object storage through fsspec against a real S3 API server (moto) on 127.0.0.1."""

import contextlib
import os
import threading

import pytest
import s3fs

from conftest import recall, truth_of
from etl.run.job import run_ocr
from etl.cli import main
from etl.dataset.views import connect, query

pytestmark = pytest.mark.slow


def upload(comic_pages, bucket: str) -> s3fs.S3FileSystem:
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for png in sorted(comic_pages.glob("*.png")):
        fs.put_file(str(png), f"{bucket}/pages/{png.name}")
    return fs


def test_manifest_ocr_and_query_over_s3(comic_pages, bucket, tmp_path, capsys):
    fs = upload(comic_pages, bucket)
    manifest = tmp_path / "m.parquet"
    assert main(["manifest", f"src=s3://{bucket}/pages", f"out={manifest}"]) == 0
    out = f"s3://{bucket}/ocr"
    assert main(["ocr", "engine=tesseract", f"manifest={manifest}", f"out={out}", "progress=false"]) == 0
    assert "6 ok" in capsys.readouterr().out
    assert main(["query", f"out={out}", "sql=select count(*) as n from pages"]) == 0
    assert "│ 6   │" in capsys.readouterr().out

    truth = truth_of(comic_pages)
    got = dict(query(out, "select page_id, text from page_text").iter_rows())
    assert set(got) == set(truth)  # page_id = path under the prefix without extension
    assert sum(recall(truth[p], got[p]) for p in truth) / len(truth) >= 0.9
    uris = query(out, "select image_uri from pages")["image_uri"]
    assert all(u.startswith(f"s3://{bucket}/pages/") for u in uris)
    objects = fs.find(f"{bucket}/ocr")
    assert objects and all(o.endswith(".parquet") and "/part-" in o for o in objects)

    # Resume over S3: the second run reads nothing.
    s = run_ocr(str(manifest), engine="tesseract", out=out)
    assert (s.skipped, s.ok) == (6, 0)

    # A manifest stored in S3 works too.
    fs.put_file(str(manifest), f"{bucket}/m.parquet")
    assert run_ocr(f"s3://{bucket}/m.parquet", engine="tesseract", out=out).skipped == 6


def test_storage_unreachable_mid_run_then_a_rerun_completes(comic_pages, bucket, tmp_path):
    fs = upload(comic_pages, bucket)
    # Pages are read one call after another; comic-002 is a local FIFO: when its
    # worker opens it, the storage is cut, then the page's bytes are fed to it.
    fifo = tmp_path / "comic-002.png"
    os.mkfifo(fifo)
    rows = [f"comic-00{i},s3://{bucket}/pages/comic-00{i}.png" for i in range(6)]
    rows[2] = f"comic-002,{fifo}"
    manifest = tmp_path / "m.csv"
    manifest.write_text("page_id,image_uri\n" + "\n".join(rows) + "\n")

    def cut_when_reached():
        with open(fifo, "wb") as f:  # returns when the worker opens the FIFO
            s3_proxy.cut()
            f.write((comic_pages / "comic-002.png").read_bytes())

    from conftest import PROXY_PORT  # noqa: F401  (the proxy the env points at)

    s3_proxy = pytest.s3_proxy
    feeder = threading.Thread(target=cut_when_reached, daemon=True)
    feeder.start()
    out = f"s3://{bucket}/ocr"
    s = run_ocr(str(manifest), engine="tesseract", out=out, batch=1, workers=1, retries=0, layout="page")
    feeder.join(timeout=60)
    assert s.ok == 2 and s.failed == 4, s  # two pages written before the cut
    assert s.unrecorded == 4  # their error rows could not be written either: reported

    s3_proxy.restore()
    fifo.unlink()
    fifo.write_bytes((comic_pages / "comic-002.png").read_bytes())
    s = run_ocr(str(manifest), engine="tesseract", out=out, batch=1, workers=1, layout="page")
    assert (s.skipped, s.ok, s.failed) == (2, 4, 0)
    con = connect(out)
    assert con.execute("select count(*), count(distinct page_id), count(*) filter (status = 'ok') from pages").fetchone() == (6, 6, 6)
    assert all(o.endswith(".parquet") for o in fs.find(f"{bucket}/ocr"))  # nothing partial


@pytest.fixture(autouse=True)
def _expose_proxy(s3_server):
    pytest.s3_proxy = s3_server


@contextlib.contextmanager
def serving(handler):
    """An HTTP server on loopback for the block; yields its base URL."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_http_image_uris(comic_pages, tmp_path):
    import functools
    from http.server import SimpleHTTPRequestHandler

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(comic_pages))
    handler.log_message = lambda *a: None
    with serving(handler) as base:
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"page_id,image_uri\ncomic-000,{base}/comic-000.png\ngone,{base}/no-such-page.png\n")
        s = run_ocr(str(manifest), engine="tesseract", out=str(tmp_path / "ds"))
        assert (s.ok, s.failed) == (1, 1) and s.error_kinds == {"missing_file": 1}
        assert recall(truth_of(comic_pages)["comic-000"], query(str(tmp_path / "ds"), "select text from page_text")["text"][0]) >= 0.9


def test_a_stalled_image_read_is_the_pages_timeout_and_a_huge_one_is_refused_unread(comic_pages, tmp_path):
    """Reading belonged to no deadline: a stalled HTTP body held its batch until the call's limit.
    And a body of any size was read whole into memory."""
    import time
    from http.server import BaseHTTPRequestHandler

    page = (comic_pages / "comic-000.png").read_bytes()
    sent = {"huge": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _head(self, length):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def do_HEAD(self):
            if self.path == "/slow.png":
                time.sleep(15)
            self._head(50_000_000 if self.path == "/huge.png" else len(page))

        def do_GET(self):
            if self.path == "/slow.png":
                time.sleep(15)
            if self.path == "/huge.png":
                self._head(50_000_000)
                try:
                    for _ in range(50):
                        self.wfile.write(b"\0" * 1_000_000)
                        sent["huge"] += 1
                except OSError:
                    pass
                return
            self._head(len(page))
            self.wfile.write(page)

    with serving(Handler) as base:
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"page_id,image_uri\nslow,{base}/slow.png\nhuge,{base}/huge.png\nfine,{base}/fine.png\n")
        s = run_ocr(str(manifest), engine="tesseract", out=str(tmp_path / "ds"), layout="page", batch=3, workers=1,
                    page_timeout=4, max_bytes=2_000_000)
        rows = {r["page_id"]: r for r in query(str(tmp_path / "ds"), "select * from pages").iter_rows(named=True)}
        assert rows["slow"]["error_kind"] == "timeout" and "page_timeout=4" in rows["slow"]["error"], rows["slow"]
        assert rows["huge"]["error_kind"] == "too_large" and "max_bytes=2,000,000" in rows["huge"]["error"]
        assert rows["fine"]["status"] == "ok"  # its batch-mates' faults cost it nothing
        assert sent["huge"] == 0  # refused on its Content-Length: no byte of the body was asked for
        assert (s.ok, s.failed) == (1, 2)


def test_lithops_keeps_its_job_files_and_results_in_s3_as_on_a_cloud_backend(comic_pages, bucket, tmp_path):
    """Every cloud backend keeps Lithops' own files (function, job payloads, status, results) in
    object storage. Here the localhost backend does the same with `storage: aws_s3` on the S3 API
    server: the whole run goes through S3, as on Lambda."""
    import yaml

    fs = upload(comic_pages, bucket)
    config = tmp_path / "lithops.yaml"
    from test_runtimes import lithops_profiles

    profile = lithops_profiles()["localhost_s3"]  # the example in lithops.yaml, with this test's bucket
    profile["aws_s3"]["storage_bucket"] = bucket
    config.write_text(yaml.safe_dump(profile))  # keys and endpoint: the AWS_* variables, as on any AWS host
    rows = [f"comic-00{i},s3://{bucket}/pages/comic-00{i}.png" for i in range(4)]
    manifest = tmp_path / "m.csv"
    manifest.write_text("page_id,image_uri\n" + "\n".join(rows) + "\n")
    out = f"s3://{bucket}/ocr"
    s = run_ocr(str(manifest), engine="tesseract", out=out, config=str(config), batch=2, layout="page")
    assert (s.ok, s.failed, s.backend) == (4, 0, "localhost"), s
    assert query(out, "select count(*) as n from page_text")["n"][0] == 4
    lithops_files = [o for o in fs.find(bucket) if "/lithops." in o or o.split("/")[1].startswith("lithops")]
    assert any("/lithops.jobs/" in o for o in lithops_files), fs.find(bucket)
    # A rerun through the same storage resumes.
    assert run_ocr(str(manifest), engine="tesseract", out=out, config=str(config), layout="page").skipped == 4
