"""Exports from a real run (PP-OCRv6 on generated comic and manga pages, two volumes), each read
back by a real consumer: hOCR by the Internet Archive's parser, COCO by pycocotools, ALTO by lxml's
XML Schema validator against the official ALTO 4.4 schema, mokuro and JSONL as JSON."""

import json

import pytest
from lxml import etree

from conftest import write_manga_pages
from etl.run.job import run_ocr
from etl.cli import main
from etl.read.export import ALTO_NS, export, iter_pages
from etl.dataset.views import connect
from schemas import alto_schema

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_volumes(comic_pages, tmp_path_factory):
    """Three comic pages (volume 'comics') and two manga pages (volume 'manga') read into one dataset."""
    folder = tmp_path_factory.mktemp("volumes")
    write_manga_pages(folder, [7400, 7401])
    rows = [f"comic-00{i},{comic_pages / f'comic-00{i}.png'},comics" for i in range(3)]
    rows += [f"manga-{i},{folder / f'manga-{i}.png'},manga" for i in range(2)]
    (folder / "volumes.csv").write_text("page_id,image_uri,volume\n" + "\n".join(rows) + "\n")
    out = str(folder / "ds")
    assert run_ocr(str(folder / "volumes.csv"), out=out, batch=3).all_ok
    return out


def lines_of(out: str) -> dict[str, list[str]]:
    con = connect(out)
    rows = con.execute("select page_id, text from elements where level = 'line' order by page_id, reading_order").fetchall()
    con.close()
    got: dict[str, list[str]] = {}
    for pid, text in rows:
        got.setdefault(pid, []).append(text)
    return got


def words_of(out: str) -> dict[str, set]:
    """Per page, (text, rounded box) of each word, or of each line where the engine gives no words."""
    con = connect(out)
    rows = con.execute("""select page_id, text, round(x0), round(y0), round(x1), round(y1) from elements e
                          where level = 'word' or (level = 'line' and not exists (select 1 from elements w
                          where w.page_id = e.page_id and w.level = 'word' and w.line_id = e.line_id))
                          and level = 'line'""").fetchall()
    con.close()
    got: dict[str, set] = {}
    for pid, *word in rows:
        got.setdefault(pid, set()).add((word[0], *map(int, word[1:])))
    return got


def test_hocr_parses_back_to_the_same_words_and_boxes(two_volumes, tmp_path):
    from hocr.parse import hocr_page_iterator, hocr_page_to_word_data

    s = export(two_volumes, "hocr", str(tmp_path / "hocr"))
    assert s.pages == 5 and {p.split("/")[-2] for p in s.files} == {"comics", "manga"}
    expected = words_of(two_volumes)
    for path in s.files:
        pid = path.rsplit("/", 1)[1].removesuffix(".hocr")
        pages = []
        for page in hocr_page_iterator(path):  # a streaming parser: each page is cleared once passed
            pages.append([w for par in hocr_page_to_word_data(page) for line in par["lines"] for w in line["words"]])
        (words,) = pages
        assert {(w["text"], *map(int, w["bbox"])) for w in words} == expected[pid], pid
        assert all(0 <= w["confidence"] <= 100 for w in words)


def test_alto_has_every_line_and_word_with_coordinates(two_volumes, tmp_path):
    s = export(two_volumes, "alto", str(tmp_path / "alto"))
    schema = alto_schema()
    ns = {"a": ALTO_NS}
    lines = lines_of(two_volumes)
    for path in s.files:
        pid = path.rsplit("/", 1)[1].removesuffix(".xml")
        doc = etree.parse(path)
        assert schema.validate(doc), (pid, [str(e) for e in schema.error_log][:5])
        broken = etree.fromstring(etree.tostring(doc))
        del broken.find(".//a:String", ns).attrib["CONTENT"]  # the validator is no rubber stamp
        assert not schema.validate(broken)
        page = doc.find(".//a:Page", ns)
        assert int(page.get("WIDTH")) == 1200 and int(page.get("HEIGHT")) == 1700
        got = [" ".join(s.get("CONTENT") for s in tl.findall("a:String", ns)) for tl in doc.iterfind(".//a:TextLine", ns)]
        assert [g.replace(" ", "") for g in got] == [t.replace(" ", "") for t in lines[pid]], pid
        for tl in doc.iterfind(".//a:TextLine", ns):  # the outline inside the line's box
            points = [tuple(map(int, p.split(","))) for p in tl.find("a:Shape/a:Polygon", ns).get("POINTS").split()]
            x, y, w, h = (int(tl.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))
            assert len(points) >= 4 and all(x - 1 <= px <= x + w + 1 and y - 1 <= py <= y + h + 1 for px, py in points)
        for s_el in doc.iterfind(".//a:String", ns):
            assert 0 <= float(s_el.get("WC")) <= 1 and int(s_el.get("WIDTH")) > 0 and int(s_el.get("HEIGHT")) > 0


def test_mokuro_volumes_load_back_with_the_fields_the_reader_uses(two_volumes, tmp_path):
    s = export(two_volumes, "mokuro", str(tmp_path / "mokuro"), title="Tests")
    assert sorted(p.rsplit("/", 1)[1] for p in s.files) == ["comics.mokuro", "manga.mokuro"]
    lines = lines_of(two_volumes)
    for path in s.files:
        vol = json.loads(open(path, encoding="utf-8").read())
        assert vol["title"] == "Tests" and vol["volume"] == path.rsplit("/", 1)[1].removesuffix(".mokuro")
        assert vol["title_uuid"] and vol["volume_uuid"]
        for page in vol["pages"]:
            pid = page["img_path"].removesuffix(".png")
            assert (page["img_width"], page["img_height"]) == (1200, 1700)
            assert [t for b in page["blocks"] for t in b["lines"]] == lines[pid]
            for b in page["blocks"]:
                x0, y0, x1, y1 = b["box"]
                assert 0 <= x0 < x1 <= 1200 and 0 <= y0 < y1 <= 1700 and b["font_size"] > 0
                assert len(b["lines_coords"]) == len(b["lines"]) and all(len(q) == 4 for q in b["lines_coords"])
                assert b["vertical"] is pid.startswith("manga")


def test_coco_loads_in_pycocotools_with_a_box_per_line(two_volumes, tmp_path):
    from pycocotools.coco import COCO

    s = export(two_volumes, "coco", str(tmp_path / "coco"))
    coco = COCO(s.files[0])
    lines = lines_of(two_volumes)
    assert len(coco.getImgIds()) == 5 and len(coco.getAnnIds()) == sum(map(len, lines.values()))
    for img in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert [a["text"] for a in anns] == lines[img["page_id"]]
        assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 and a["area"] > 0 for a in anns)
        assert coco.annToMask(anns[0]).sum() > 0  # the polygon is a real region of the page


def test_jsonl_streams_pages_in_chunks_and_the_cli_needs_an_engine_when_there_are_several(two_volumes, tmp_path, capsys):
    assert [p.page_id for p in iter_pages(two_volumes, chunk=1)] == [p.page_id for p in iter_pages(two_volumes)]
    assert main(["export", f"out={two_volumes}", "format=jsonl", f"dest={tmp_path / 'j'}"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "j" / "pages.jsonl").read_text().splitlines()]
    assert [r["volume"] for r in rows] == ["comics"] * 3 + ["manga"] * 2
    assert all(w["text"] for r in rows for b in r["blocks"] for ln in b["lines"] for w in ln["words"])
    assert main(["export", f"out={two_volumes}", "format=pdf", f"dest={tmp_path / 'x'}"]) == 2
    assert "one of mokuro" in capsys.readouterr().err


def test_embeddings_made_offline_find_the_nearest_pages_with_the_shipped_query(two_volumes, capsys):
    from etl.read.embed import embed_pages
    from etl.dataset.views import SQL_DIR, query

    assert embed_pages(two_volumes) == 5
    assert embed_pages(two_volumes) == 5  # a rerun replaces the model's file: one vector per page
    assert query(two_volumes, "select count(*) as n from embeddings")["n"][0] == 5
    sql = (SQL_DIR / "join_embeddings.sql").read_text()
    nearest = {r["page_id"]: r["neighbour"] for r in query(two_volumes, sql).iter_rows(named=True) if r["rank"] == 1}
    assert nearest["manga-0"] == "manga-1" and nearest["manga-1"] == "manga-0", nearest  # Japanese beside Japanese
    assert all(nearest[f"comic-00{i}"].startswith("comic") for i in range(3)), nearest
    assert main(["query", f"out={two_volumes}", "file=sql/join_embeddings.sql"]) == 0
    assert "manga-1" in capsys.readouterr().out
