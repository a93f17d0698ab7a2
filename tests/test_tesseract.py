"""The comic-aware Tesseract engine, directly (real Tesseract, real detector weights)."""

import json

import pytest
from PIL import Image

from conftest import recall, truth_of
from engines import get_engine
from engines.layout import Box, group_blocks, is_vertical, order_blocks, reading_sequence, union_all
from etl.errors import ConfigError

Tesseract = get_engine("tesseract")


@pytest.fixture(scope="module")
def engines():
    regions = Tesseract(Tesseract.parse_options({"lang": "en"}))
    page = Tesseract(Tesseract.parse_options({"lang": "en", "layout": "page"}))
    return regions, page


def test_regions_read_art_heavy_pages_where_plain_tesseract_fails(comic_pages, engines):
    regions, page = engines
    truth = truth_of(comic_pages)
    ours, plain = [], []
    for pid, text in truth.items():
        img = Image.open(comic_pages / f"{pid}.png")
        ours.append(recall(text, regions.read(img).text))
        plain.append(recall(text, page.read(img).text))
    assert sum(ours) / len(ours) >= 0.9, ours
    assert min(ours) >= 0.8, ours
    # Plain full-page Tesseract loses much of the text on the same pages.
    assert sum(plain) / len(plain) <= 0.75, plain
    assert sum(ours) / len(ours) - sum(plain) / len(plain) >= 0.2


def test_elements_locate_the_text_in_source_pixels(comic_pages, engines):
    regions, _ = engines
    rec = json.loads((comic_pages / "truth.jsonl").read_text().splitlines()[0])
    result = regions.read(Image.open(comic_pages / f"{rec['page_id']}.png"))
    lines = [e for e in result.elements if e.level == "line"]
    words = [e for e in result.elements if e.level == "word"]
    assert all(0 <= e.confidence <= 1 for e in lines + words)
    assert all(e.polygon and len(e.polygon) == 4 for e in lines)
    assert [e.reading_order for e in lines] == list(range(len(lines)))
    # Every true line is covered by a detected line box whose text matches it.
    for true in rec["lines"]:
        x0, y0, x1, y1 = true["box"]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        hits = [e for e in lines if e.x0 <= cx <= e.x1 and e.y0 <= cy <= e.y1]
        assert hits, true
        assert recall(true["text"], " ".join(h.text for h in hits)) >= 0.5, (true, [h.text for h in hits])
    # Word boxes sit inside their line boxes (small tolerance for rounding).
    by_line = {e.line_id: e for e in lines}
    for w in words:
        line = by_line[w.line_id]
        assert line.x0 - 4 <= w.x0 and w.x1 <= line.x1 + 4 and line.y0 - 4 <= w.y0 and w.y1 <= line.y1 + 4


@pytest.mark.parametrize("mode, compression", [("1", "group4"), ("L", "tiff_lzw")])
def test_compressed_tiff_scans_read_as_their_png(comic_pages, engines, mode, compression):
    """A scan archived as a compressed TIFF reaches Tesseract as the same pixels as its PNG (the
    TIFF handed to Tesseract once took its compression from the source: G4 on grey failed)."""
    import io

    from etl.run.images import decode

    _, page = engines
    pid, text = next(iter(truth_of(comic_pages).items()))
    src = Image.open(comic_pages / f"{pid}.png").convert("L")
    if mode == "1":
        src = src.point(lambda v: 255 if v > 128 else 0).convert("1")
    buf = io.BytesIO()
    src.save(buf, format="TIFF", compression=compression, dpi=(300, 300))
    png = io.BytesIO()
    src.save(png, format="PNG")
    got = page.read(decode(buf.getvalue()))
    assert got.text == page.read(decode(png.getvalue())).text
    assert recall(text, got.text) >= 0.5, got.text


def test_blank_and_tiny_pages_read_as_empty(engines):
    regions, _ = engines
    assert regions.read(Image.new("L", (800, 600), 255)).elements == []
    assert regions.read(Image.new("RGB", (1, 1), "white")).text == ""


def test_language_codes_and_missing_language_data():
    assert Tesseract.parse_options({"lang": "en"}).lang == "eng"
    assert Tesseract.parse_options({"lang": "en+de"}).lang == "eng+deu"
    Tesseract.check(Tesseract.parse_options({"lang": "eng"}))
    with pytest.raises(ConfigError) as err:
        Tesseract.check(Tesseract.parse_options({"lang": "fr"}))
    assert "fra" in str(err.value) and "tesseract-ocr-fra" in str(err.value)
    with pytest.raises(ConfigError, match="layout"):
        Tesseract.parse_options({"layout": "columns"})
    with pytest.raises(ConfigError, match="unknown option"):
        Tesseract.parse_options({"langs": "eng"})
    with pytest.raises(ConfigError, match="psm"):
        Tesseract.parse_options({"psm": "six"})


def test_version_names_tesseract_and_detector(engines):
    regions, page = engines
    assert regions.version().startswith("tesseract 5") and "PP-OCRv6" in regions.version()
    assert page.version().startswith("tesseract 5") and "PP-OCRv6" not in page.version()


def test_unknown_engines():
    with pytest.raises(ConfigError, match="unknown engine 'nope'; available: deepseek, easyocr, gemma, paddleocr"):
        get_engine("nope")


def test_reading_order_groups_bubbles_and_reads_rows():
    # Two bubbles side by side (two lines each), then a caption below.
    lines = [Box(600, 100, 800, 130), Box(610, 135, 790, 165), Box(100, 120, 300, 150), Box(110, 155, 290, 185),
             Box(100, 500, 400, 530)]
    blocks = group_blocks(lines)
    assert sorted(map(sorted, blocks)) == [[0, 1], [2, 3], [4]]
    boxes = [union_all(lines[i] for i in g) for g in blocks]
    ltr = [blocks[i] for i in order_blocks(boxes)]
    assert ltr == [[2, 3], [0, 1], [4]]
    rtl = [blocks[i] for i in order_blocks(boxes, rtl=True)]
    assert rtl == [[0, 1], [2, 3], [4]]


def test_vertical_columns_group_into_bubbles_read_right_to_left():
    # Two manga bubbles side by side, each of two columns; then a horizontal caption below.
    cols = [Box(300, 100, 340, 400), Box(250, 100, 290, 360), Box(700, 120, 740, 420), Box(650, 120, 690, 300)]
    lines = cols + [Box(100, 600, 500, 640)]
    vertical = [True] * 4 + [False]
    assert sorted(map(sorted, group_blocks(lines, vertical=vertical))) == [[0, 1], [2, 3], [4]]
    # right bubble first, each bubble's right column first, the caption last
    assert reading_sequence(lines, rtl=True, vertical=vertical) == [(1, 2), (1, 3), (0, 0), (0, 1), (2, 4)]
    assert is_vertical(cols[0], "夢を見ていた") and not is_vertical(Box(0, 0, 10, 30), "I")
