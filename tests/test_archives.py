"""`just ocr src=`: comics as people keep them (CBZ, CBT, CB7, CBR, PDF, EPUB, folders of series),
read in place on the real pipeline (Lithops localhost, Tesseract, Parquet, DuckDB, S3 on 127.0.0.1)."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest

import comic_files as cf
from conftest import recall, truth_of
from etl.cli import main
from etl.dataset.views import connect
from etl.read.export import export
from etl.run.job import run_ocr

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def page_bytes(comic_pages: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(comic_pages.glob("comic-*.png"))}


@pytest.fixture(scope="module")
def library(comic_pages, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A series folder mixing every kind, and which source page each page id shows."""
    pages = page_bytes(comic_pages)
    root = tmp_path_factory.mktemp("library")
    series = root / "Moon Patrol"
    series.mkdir()
    shows: dict[str, str] = {}

    def add(volume: str, members: dict[str, str], write) -> None:
        write(series / volume, {m: pages[p] for m, p in members.items()})
        shows.update({f"Moon Patrol/{volume}/{m}": p for m, p in members.items()})

    # Names that sort wrong as text: p2 before p10.
    cf.write_cbz(series / "v01.cbz", {"p1.png": pages["comic-000"], "p2.png": pages["comic-001"],
                                       "p10.png": pages["comic-002"]},
                 {"ComicInfo.xml": b"<ComicInfo><Series>Moon Patrol</Series><Volume>1</Volume>"
                                   b"<Title>Lift-off</Title></ComicInfo>", "Thumbs.db": b"\0" * 64})
    shows.update({"Moon Patrol/v01.cbz/p1.png": "comic-000", "Moon Patrol/v01.cbz/p2.png": "comic-001",
                  "Moon Patrol/v01.cbz/p10.png": "comic-002"})
    add("v02.cbt", {"001.png": "comic-003"}, cf.write_cbt)
    add("v03.cb7", {"a/1.png": "comic-004", "a/2.png": "comic-005"}, cf.write_cb7)
    add("v04.cbr", {"page1.png": "comic-001"}, cf.write_cbr)
    cf.write_pdf(series / "v05.pdf", [pages["comic-002"], pages["comic-003"]])  # and a vector page
    shows.update({"Moon Patrol/v05.pdf/1": "comic-002", "Moon Patrol/v05.pdf/2": "comic-003",
                  "Moon Patrol/v05.pdf/3": "THE END"})
    cf.write_epub(series / "v06.epub", {"x1.png": pages["comic-004"], "x2.png": pages["comic-005"]})
    shows.update({"Moon Patrol/v06.epub/OEBPS/images/x2.png": "comic-005",  # the spine's order
                  "Moon Patrol/v06.epub/OEBPS/images/x1.png": "comic-004"})
    loose = series / "v07"  # a volume as a folder of page images
    loose.mkdir()
    (loose / "2.png").write_bytes(pages["comic-000"])
    (loose / "10.png").write_bytes(pages["comic-001"])
    shows.update({"Moon Patrol/v07/2": "comic-000", "Moon Patrol/v07/10": "comic-001"})
    return root, shows


def test_a_series_folder_of_every_kind_reads_in_place_in_order_and_resumes(library, comic_pages, tmp_path):
    root, shows = library
    out = tmp_path / "ds"
    before = set(os.listdir(tmp_path))
    done = subprocess.run([sys.executable, "-m", "etl.cli", "ocr", f"src={root}", f"out={out}", "progress=false",
                           "show=0"], cwd=REPO, capture_output=True, text=True, timeout=600)  # the default engine
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(shows)} in 7 volumes: {len(shows)} ok, 0 failed" in done.stdout, done.stdout
    assert set(os.listdir(tmp_path)) - before == {"ds"}  # nothing unpacked anywhere
    assert not any(p.suffix in (".png", ".jpg") for p in root.rglob("*") if p.parent.name not in ("v07",))
    con = connect(str(out))
    rows = {r[0]: r[1:] for r in con.execute(
        "select page_id, series, volume, title, page_no, container, text from pages order by page_id").fetchall()}
    con.close()
    assert set(rows) == set(shows)  # one ok row per page, nothing else
    truth = truth_of(comic_pages)
    for pid, source in shows.items():
        text = rows[pid][5]
        expected = truth.get(source, source)
        assert recall(expected, text) >= 0.8, (pid, text[:80])
    # natural order, the spine's order, ComicInfo's names, the container of each page
    assert [rows[f"Moon Patrol/v01.cbz/{m}"][3] for m in ("p1.png", "p2.png", "p10.png")] == [1, 2, 3]
    assert rows["Moon Patrol/v01.cbz/p10.png"][:3] == ("Moon Patrol", "1", "Lift-off")
    assert rows["Moon Patrol/v06.epub/OEBPS/images/x2.png"][3] == 1
    assert [rows[f"Moon Patrol/v07/{n}"][3] for n in ("2", "10")] == [1, 2]
    assert rows["Moon Patrol/v03.cb7/a/2.png"][1:] [:1] == ("v03",)
    assert all(r[0] == "Moon Patrol" for r in rows.values())
    assert rows["Moon Patrol/v05.pdf/3"][4].endswith("v05.pdf")
    # Resume: a rerun reads nothing.
    again = run_ocr(src=str(root), out=str(out))
    assert (again.skipped, again.ok, again.failed, again.volumes) == (len(shows), 0, 0, 7)
    # Exports group by volume: a .mokuro file per volume, where mokuro puts it (beside the volume).
    s = export(str(out), "mokuro", str(tmp_path / "mokuro"))
    files = sorted(str(p.relative_to(tmp_path / "mokuro")) for p in (tmp_path / "mokuro").rglob("*.mokuro"))
    assert s.pages == len(shows) and files == [f"Moon Patrol/v0{i}.mokuro" for i in range(1, 8)], files
    v01 = json.loads((tmp_path / "mokuro" / "Moon Patrol" / "v01.mokuro").read_text())
    assert [p["img_path"] for p in v01["pages"]] == ["p1.png", "p2.png", "p10.png"]  # in reading order


def test_just_manifest_writes_the_same_rows_for_editing(library, tmp_path):
    root, shows = library
    manifest = tmp_path / "m.csv"
    assert main(["manifest", f"src={root}", f"out={manifest}"]) == 0
    df = pl.read_csv(manifest, infer_schema=False)
    assert set(df["page_id"]) == set(shows)
    assert df.columns == ["page_id", "image_uri", "series", "volume", "title", "page_no", "container"]
    s = run_ocr(str(manifest), engine="tesseract", layout="page", out=str(tmp_path / "ds"), limit=2)
    assert s.ok == 2


def test_one_page_of_a_cbz_on_s3_costs_its_index_and_that_member(comic_pages, bucket, s3_server, tmp_path):
    """Ranged reads: a page inside a 9 MB CBZ in a bucket is read without fetching the archive."""
    import s3fs

    pages = page_bytes(comic_pages)
    cbz = tmp_path / "big.cbz"
    with zipfile.ZipFile(cbz, "w", zipfile.ZIP_STORED) as z:  # PNGs do not deflate: stored, as most CBZs
        for i in range(60):
            z.writestr(f"p{i:03d}.png", pages[f"comic-00{i % 6}"])
    s3fs.S3FileSystem(skip_instance_cache=True).put_file(str(cbz), f"{bucket}/series/big.cbz")
    size = cbz.stat().st_size
    start = s3_server.served
    s = run_ocr(src=f"s3://{bucket}/series/big.cbz", engine="tesseract", layout="page", out=str(tmp_path / "ds"),
                limit=1)
    fetched = s3_server.served - start
    assert s.ok == 1 and s.pages_total == 1, s.examples
    assert fetched < size / 4, (fetched, size)  # the listing (central directory) and one member: not the archive
    con = connect(str(tmp_path / "ds"))
    pid, text = con.execute("select page_id, text from page_text").fetchone()
    con.close()
    # the right page (Tesseract's own layout reads about 0.6 of these words; another page, about 0.1)
    assert pid == "big.cbz/p000.png" and recall(truth_of(comic_pages)["comic-000"], text) >= 0.5


def encrypted_zip(path: Path, data: bytes) -> None:
    """A zip whose member is flagged encrypted, as ZipCrypto writes it (the flag in its local and its
    central header): no reader opens it without the password."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("p1.png", data)
    raw = bytearray(path.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        raw[at + flags_at] |= 0x1
    path.write_bytes(bytes(raw))


def test_bad_comic_files_get_rows_with_reasons_and_the_rest_is_read(comic_pages, tmp_path):
    import py7zr

    pages = page_bytes(comic_pages)
    lib = tmp_path / "lib"
    lib.mkdir()
    good = cf.write_cbz(lib / "good.cbz", {"1.png": pages["comic-000"]})
    truncated = lib / "truncated.cbz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    encrypted_zip(lib / "locked.cbz", pages["comic-001"])
    with py7zr.SevenZipFile(lib / "locked.cb7", "w", password="secret") as z:  # headers encrypted too
        z.header_encryption = True
        z.writestr(pages["comic-001"], "1.png")
    bomb = lib / "bomb.cbz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:  # 300 MB of zeros in 300 kB
        z.writestr("1.png", pages["comic-002"])
        with z.open("2.png", "w") as f:
            for _ in range(300):
                f.write(b"\0" * 1_000_000)
    with zipfile.ZipFile(lib / "odd.cbz", "w") as z:
        z.writestr("../../escape.png", pages["comic-003"])
        z.writestr("inner.cbz", good.read_bytes())
        z.writestr("ok.png", pages["comic-003"])
        z.writestr("ComicInfo.xml", b"<ComicInfo><Series>Odd")  # unreadable metadata: no harm
    with zipfile.ZipFile(lib / "empty.cbz", "w") as z:
        z.writestr("notes.txt", b"no pages here")
    broken = io.BytesIO()
    cf.write_pdf(tmp_path / "whole.pdf", [pages["comic-004"], pages["comic-005"]], vector_text=None)
    data = (tmp_path / "whole.pdf").read_bytes()
    jpeg_start = data.rfind(b"\xff\xd8\xff")  # the second page's JPEG: its headers overwritten
    data = data[: jpeg_start + 20] + b"\0" * 600 + data[jpeg_start + 620:]
    broken.write(data)
    (lib / "broken.pdf").write_bytes(broken.getvalue())
    before = set(os.listdir(tmp_path))
    s = run_ocr(src=str(lib), engine="tesseract", layout="page", out=str(tmp_path / "ds"), max_bytes=50_000_000)
    assert set(os.listdir(tmp_path)) - before == {"ds"}  # nothing written outside out=
    con = connect(str(tmp_path / "ds"))
    rows = {r[0]: r[1:] for r in con.execute("select page_id, status, error_kind, error from pages").fetchall()}
    con.close()
    kinds = {pid: kind for pid, (_, kind, _) in rows.items()}
    assert kinds == {
        "good.cbz/1.png": None,
        "truncated.cbz": "corrupt_archive",
        "locked.cbz/p1.png": "encrypted",
        "locked.cb7": "encrypted",
        "bomb.cbz/1.png": None,
        "bomb.cbz/2.png": "too_large",
        "odd.cbz/../../escape.png": "unsafe_member",
        "odd.cbz/inner.cbz": "nested_archive",
        "odd.cbz/ok.png": None,
        "empty.cbz": "empty_container",
        "broken.pdf/1": None,
        "broken.pdf/2": "corrupt_image",
    }, kinds
    assert "max_bytes" in rows["bomb.cbz/2.png"][2] and "truncated or corrupt" in rows["truncated.cbz"][2]
    assert s.ok == 4 and s.failed == 8 and s.volumes == 8
    # A rerun retries what failed, and reads nothing twice.
    again = run_ocr(src=str(lib), engine="tesseract", layout="page", out=str(tmp_path / "ds"), max_bytes=50_000_000)
    assert (again.skipped, again.ok, again.failed) == (4, 0, 8)


def test_src_that_holds_nothing_is_refused_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("no comics")
    assert main(["ocr", f"src={tmp_path}", "engine=tesseract", f"out={tmp_path / 'ds'}"]) == 2
    assert main(["ocr", f"src={tmp_path / 'missing'}", "engine=tesseract", f"out={tmp_path / 'ds'}"]) == 2
    assert not (tmp_path / "ds").exists()


def test_a_cascade_reads_src_too(comic_pages, tmp_path):
    from etl.cascade.run import run_cascade

    pages = page_bytes(comic_pages)
    cf.write_cbz(tmp_path / "v1.cbz", {"1.png": pages["comic-000"], "2.png": pages["comic-001"]})
    s = run_cascade(["tesseract", "ppocrv6"], out=str(tmp_path / "ds"), src=str(tmp_path / "v1.cbz"),
                    when="confidence < 0.5", layout="page")
    first, *later = s.stages
    assert first.ok == 2 and first.volumes == 1 and all(st.failed == 0 for st in later)
    con = connect(str(tmp_path / "ds"))
    assert con.execute("select count(*) from best_text").fetchone()[0] == 2
    con.close()


def test_pdf_pages_are_their_image_or_rendered_at_its_resolution(comic_pages, tmp_path):
    """A page that is one image is that image (a JPEG as stored); a page with text over its image is
    rendered at the image's own resolution; a vector page at 200 dpi, or at pdf_dpi=."""
    from PIL import Image

    from etl.dataset.storage import read_bytes

    pages = page_bytes(comic_pages)
    scan_pdf = cf.write_pdf(tmp_path / "scan.pdf", [pages["comic-000"]])  # and a vector page
    lettered = cf.write_pdf(tmp_path / "lettered.pdf", [pages["comic-001"]], vector_text=None, caption="LETTERED")
    size = Image.open(io.BytesIO(pages["comic-000"])).size

    def shown(uri: str, dpi=None) -> tuple[bytes, tuple[int, int]]:
        data = read_bytes(uri, 0, dpi)
        return data[:3], Image.open(io.BytesIO(data)).size

    assert shown(f"pdf://1::{scan_pdf}") == (b"\xff\xd8\xff", size)  # the embedded JPEG itself
    assert shown(f"pdf://2::{scan_pdf}") == (b"\x89PN", (1700, 2200))  # 8.5 x 11 in at 200 dpi
    assert shown(f"pdf://2::{scan_pdf}", 100)[1] == (850, 1100)
    head, rendered = shown(f"pdf://1::{lettered}")  # image and text: rendered at the image's 150 dpi
    assert head == b"\x89PN" and abs(rendered[0] - size[0]) <= 2 and abs(rendered[1] - size[1]) <= 2
    s = run_ocr(src=str(tmp_path / "scan.pdf"), engine="tesseract", layout="page", out=str(tmp_path / "ds"),
                pdf_dpi=300)
    con = connect(str(tmp_path / "ds"))
    sizes = dict(con.execute("select page_id, [width, height] from pages").fetchall())
    con.close()
    assert s.ok == 2 and sizes["scan.pdf/1"] == list(size)  # pdfium rounds a rendered side up or down
    assert abs(sizes["scan.pdf/2"][0] - 2550) <= 1 and abs(sizes["scan.pdf/2"][1] - 3300) <= 1
