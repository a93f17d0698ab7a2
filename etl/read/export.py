"""Exports of a dataset for readers, archives and training: mokuro, ALTO, hOCR, COCO, JSONL.

Pages stream from the views in chunks (bounded memory at any size), one engine and options at a
time, grouped by volume: for pages read from `src=`, each container (archive, PDF, image folder)
by its path under `src` (`Moon Patrol/v01`, as mokuro names a volume's file beside the volume), in
reading order; otherwise a manifest's `volume` (or `series`) column. File names are safe, bounded
and unique (`_safe`). Every format is written through fsspec, so `dest` may be a local folder or
an object-store prefix.

    mokuro  DEST/<volume>.mokuro        one per volume (reader.mokuro.app opens it with the images)
    alto    DEST/<volume>/<page>.xml    ALTO v4, word confidence (WC) and coordinates
    hocr    DEST/<volume>/<page>.hocr   ocr_page / ocr_carea / ocr_par / ocr_line / ocrx_word, x_wconf
    coco    DEST/annotations.json       line boxes, polygons and text as COCO annotations
    jsonl   DEST/pages.jsonl            a page a line: its blocks, lines and words
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
import uuid
from collections.abc import Iterator
from typing import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from etl.dataset import storage
from etl.errors import UsageError

FORMATS = ("mokuro", "alto", "hocr", "coco", "jsonl")
VOLUME_COLUMNS = ("volume", "series")
CHUNK_PAGES = 2000


@dataclass
class Word:
    text: str
    box: tuple[float, float, float, float]
    confidence: float | None


@dataclass
class Line:
    text: str
    box: tuple[float, float, float, float]
    polygon: list[list[float]] | None
    confidence: float | None
    vertical: bool
    words: list[Word] = field(default_factory=list)


@dataclass
class Block:
    box: tuple[float, float, float, float]
    vertical: bool
    lines: list[Line] = field(default_factory=list)


@dataclass
class ExportPage:
    page_id: str
    image_uri: str
    width: int
    height: int
    engine: str
    volume: str
    blocks: list[Block]


def _union(boxes) -> tuple[float, float, float, float]:
    boxes = list(boxes)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def iter_pages(out: str, engine: str | None = None, chunk: int = CHUNK_PAGES,
               on_warning: Callable[[str], None] | None = None) -> Iterator[ExportPage]:
    """The pages read of dataset `out` with their blocks, lines and words, by volume, then in reading
    order (`page_no`, from src=) or by page id."""
    from etl.dataset.views import connect

    con = connect(out, on_warning=on_warning or (lambda w: None))
    try:
        engines = [r[0] for r in con.execute("select distinct engine || ':' || config_hash from page_text").fetchall()]
        if not engines:
            raise UsageError(f"out={out}: no page has been read yet")
        if engine is None:
            if len(engines) > 1:
                raise UsageError(f"out={out} holds several engines and options ({', '.join(sorted(engines))}): "
                                 "choose one with engine=NAME or engine=NAME:CONFIG_HASH")
            engine = engines[0]
        name, _, cfg = engine.partition(":")
        matches = [e for e in engines if e.split(":")[0] == name and (not cfg or e.split(":")[1] == cfg)]
        if len(matches) != 1:
            raise UsageError(f"engine={engine}: {'no' if not matches else 'more than one'} match among "
                             f"{', '.join(sorted(engines))}")
        name, cfg = matches[0].split(":")
        columns = {r[0] for r in con.execute("select column_name from (describe pages)").fetchall()}
        # Pages read from src= know their container (archive, PDF, image folder): a volume each,
        # named by its path under src, as mokuro names a volume's file beside it.
        vol = next((c for c in ("container", *VOLUME_COLUMNS) if c in columns), None)
        vol_sql = f'coalesce(cast("{vol}" as varchar), \'\')' if vol else "''"
        order = "volume, page_no, page_id" if "page_no" in columns else "volume, page_id"  # a volume's reading order
        pages = con.execute(
            f"select page_id, image_uri, width, height, run_id, batch_id, {vol_sql} as volume from pages "
            f"where status = 'ok' and engine = ? and config_hash = ? order by {order}", [name, cfg]).fetchall()
        for start in range(0, len(pages), chunk):
            part = pages[start:start + chunk]
            rows = con.execute(
                "select page_id, level, text, confidence, x0, y0, x1, y1, polygon, reading_order, block_id, line_id, "
                "vertical from elements where engine = ? and config_hash = ? and list_contains(?, page_id) "
                "order by page_id, level, reading_order", [name, cfg, [p[0] for p in part]]).fetchall()
            by_page: dict[str, list] = {}
            for r in rows:
                by_page.setdefault(r[0], []).append(r)
            for pid, uri, w, h, _, _, volume in part:
                if vol == "container" and volume:
                    volume = volume_path(pid, uri)
                yield ExportPage(pid, uri, w or 0, h or 0, name, volume, _structure(by_page.get(pid, [])))
    finally:
        con.close()


def volume_path(page_id: str, image_uri: str) -> str:
    """The path of a page's volume under `src=`, without its extension: `Moon Patrol/v01` for
    `Moon Patrol/v01.cbz/p1.png` (a page in an archive or PDF) or `Moon Patrol/v07/2` (an image)."""
    from etl.dataset.containers import kind_of, split_uri

    inside = split_uri(image_uri)
    if inside and page_id.endswith("/" + inside[1]):
        path = page_id[: -len(inside[1]) - 1]
    else:
        path = posixpath.dirname(page_id)
    if kind_of(path):
        path = path[: -len(".tar.gz")] if path.lower().endswith(".tar.gz") else posixpath.splitext(path)[0]
    return path


def _structure(rows: list) -> list[Block]:
    """Element rows of one page -> blocks of lines of words, in reading order. Lines without a box
    (plain-text API answers) are left out: every export format places text on the page."""
    lines: dict[int, tuple[int, Line]] = {}
    words: dict[int, list[Word]] = {}
    block_boxes: dict[int, tuple] = {}
    for _, level, text, conf, x0, y0, x1, y1, poly, order, block_id, line_id, vertical in rows:
        if not _finite(x0, y0, x1, y1) or not (text or "").strip():  # NaN or no box: nowhere to place it
            continue
        box = (float(x0), float(y0), float(x1), float(y1))
        conf = conf if _finite(conf) else None
        poly = poly if poly and all(_finite(*pt) for pt in poly) else None
        if level == "line":
            key = line_id if line_id is not None else order
            lines[key] = (block_id if block_id is not None else key,
                          Line(text, box, [list(map(float, p)) for p in poly] if poly else None, conf, bool(vertical)))
        elif level == "word" and line_id is not None:
            words.setdefault(line_id, []).append(Word(text, box, conf))
        elif level == "block" and block_id is not None:
            block_boxes[block_id] = box
    blocks: dict[int, Block] = {}
    for key, (block_id, line) in lines.items():
        line.words = words.get(key) or [Word(line.text, line.box, line.confidence)]
        blocks.setdefault(block_id, Block((0, 0, 0, 0), line.vertical)).lines.append(line)
    for block_id, block in blocks.items():
        block.box = block_boxes.get(block_id) or _union(ln.box for ln in block.lines)
        block.vertical = all(ln.vertical for ln in block.lines)
    return [blocks[k] for k in sorted(blocks)]


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(float(v)) for v in values)


# -- writers --------------------------------------------------------------------------------
MAX_NAME = 80  # characters of a page id or volume kept in a file name (file systems allow 255 bytes)


NOT_IN_NAMES = set('<>:"/\\|?*')  # what no file system (Windows' the strictest) takes in a file name


def _safe(name: str) -> str:
    """A file name for a page id or volume: the name itself where every file system takes it (spaces,
    '&', accents and all), else with '_' for separators, control characters and what Windows
    refuses, never '.', '..' or a leading dot or trailing space, at most MAX_NAME characters. A
    name changed on the way ends in a hash of the original, so two ids never share a file ('a/b',
    'a_b' and 'a b' become three names)."""
    kept = "".join("_" if c in NOT_IN_NAMES or ord(c) < 32 or 0x7F <= ord(c) < 0xA0 else c for c in name)
    kept = kept.lstrip(". ").rstrip(". ")
    if kept == name and 0 < len(name) <= MAX_NAME:
        return name
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=5).hexdigest()
    return f"{kept[:MAX_NAME]}-{digest}" if kept else digest


# XML 1.0 has no place for most control characters (NUL, ESC, ...), lone surrogates or U+FFFE/FFFF:
# one of them makes the whole document unreadable. Each becomes U+FFFD.
NOT_XML = re.compile("[^\\x09\\x0a\\x0d\\x20-\\ud7ff\\ue000-\\ufffd\\U00010000-\\U0010ffff]")


def _safe_path(path: str) -> str:
    """`_safe` for each part of a path: a volume's folders stay folders."""
    return "/".join(_safe(part) for part in path.split("/") if part) or "_"


def _xml(text: str) -> str:
    """Text for an XML element's content."""
    return escape(NOT_XML.sub("\ufffd", text))


def _xml_attr(text: str) -> str:
    """Text for an XML attribute, quoted."""
    return quoteattr(NOT_XML.sub("\ufffd", text))


def _json(value) -> str:
    """JSON as every parser reads it (no NaN or Infinity: _structure keeps none)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _put(dest: str, rel: str, text: str) -> str:
    with _Stream(dest, rel) as f:  # a reader never sees half a file
        f.write(text)
    return storage.join(dest, rel)


def _i(v: float) -> int:
    return int(round(v))


def hocr(page: ExportPage) -> str:
    """An hOCR 1.2 document for one page."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
           '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">',
           '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="und" lang="und">',
           '<head><title></title><meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>',
           f'<meta name="ocr-system" content={_xml_attr("comic-ocr-etl " + page.engine)}/>',
           '<meta name="ocr-capabilities" content="ocr_page ocr_carea ocr_par ocr_line ocrx_word"/></head><body>',
           f'<div class="ocr_page" id="page_1" title={_xml_attr(f"image {page.image_uri}; bbox 0 0 {page.width} {page.height}; ppageno 0")}>']
    n = 0
    for b, block in enumerate(page.blocks, 1):
        bb = " ".join(str(_i(v)) for v in block.box)
        out.append(f'<div class="ocr_carea" id="block_1_{b}" title="bbox {bb}">'
                   f'<p class="ocr_par" id="par_1_{b}" title="bbox {bb}">')
        for line in block.lines:
            n += 1
            lb = " ".join(str(_i(v)) for v in line.box)
            out.append(f'<span class="ocr_line" id="line_1_{n}" title="bbox {lb}">')
            for k, word in enumerate(line.words, 1):
                conf = "" if word.confidence is None else f"; x_wconf {_i(word.confidence * 100)}"
                wb = " ".join(str(_i(v)) for v in word.box)
                out.append(f'<span class="ocrx_word" id="word_1_{n}_{k}" title="bbox {wb}{conf}">{_xml(word.text)}</span>')
            out.append("</span>")
        out.append("</p></div>")
    out.append("</div></body></html>")
    return "\n".join(out)


ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"


def alto(page: ExportPage) -> str:
    """An ALTO v4.4 document for one page (pixel coordinates; a line's outline as its Shape; WC, a
    word's confidence 0-1), valid against the official schema (tests/test_export.py)."""
    def pos(box) -> str:
        x0, y0, x1, y1 = box
        return f'HPOS="{_i(x0)}" VPOS="{_i(y0)}" WIDTH="{_i(x1 - x0)}" HEIGHT="{_i(y1 - y0)}"'

    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<alto xmlns="{ALTO_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           f'xsi:schemaLocation="{ALTO_NS} http://www.loc.gov/alto/v4/alto-4-4.xsd">',
           "<Description><MeasurementUnit>pixel</MeasurementUnit>",
           f"<sourceImageInformation><fileName>{_xml(page.image_uri)}</fileName></sourceImageInformation>",
           f"<OCRProcessing ID=\"ocr_1\"><ocrProcessingStep><processingSoftware><softwareName>comic-ocr-etl "
           f"{_xml(page.engine)}</softwareName></processingSoftware></ocrProcessingStep></OCRProcessing>",
           "</Description><Layout>",
           f'<Page ID="page_1" PHYSICAL_IMG_NR="1" WIDTH="{page.width}" HEIGHT="{page.height}">',
           f'<PrintSpace HPOS="0" VPOS="0" WIDTH="{page.width}" HEIGHT="{page.height}">']
    n = 0
    for b, block in enumerate(page.blocks, 1):
        out.append(f'<TextBlock ID="block_{b}" {pos(block.box)}>')
        for line in block.lines:
            n += 1
            # ALTO has no line confidence (WC is a String's): each word carries its own.
            out.append(f'<TextLine ID="line_{n}" {pos(line.box)}>')
            if line.polygon:  # the outline of a slanted or vertical line, which its box only bounds
                points = " ".join(f"{_i(x)},{_i(y)}" for x, y in line.polygon)
                out.append(f'<Shape><Polygon POINTS="{points}"/></Shape>')
            for k, word in enumerate(line.words):
                if k:
                    out.append("<SP/>")
                wwc = "" if word.confidence is None else f' WC="{word.confidence:.3f}"'
                out.append(f'<String ID="string_{n}_{k + 1}" {pos(word.box)} CONTENT={_xml_attr(word.text)}{wwc}/>')
            out.append("</TextLine>")
        out.append("</TextBlock>")
    out.append("</PrintSpace></Page></Layout></alto>")
    return "\n".join(out)


def mokuro_page(page: ExportPage) -> dict:
    """One page as mokuro writes it: blocks with box (xmin, ymin, xmax, ymax), vertical, font_size,
    lines and their four-point coordinates."""
    blocks = []
    for block in page.blocks:
        sizes = [(ln.box[2] - ln.box[0]) if ln.vertical else (ln.box[3] - ln.box[1]) for ln in block.lines]
        blocks.append({
            "box": [_i(v) for v in block.box], "vertical": block.vertical,
            "font_size": round(sum(sizes) / len(sizes), 1) if sizes else 0.0,
            "lines_coords": [ln.polygon or [[ln.box[0], ln.box[1]], [ln.box[2], ln.box[1]], [ln.box[2], ln.box[3]],
                                            [ln.box[0], ln.box[3]]] for ln in block.lines],
            "lines": [ln.text for ln in block.lines],
        })
    from etl.dataset.containers import split_uri

    inside = split_uri(page.image_uri)  # a page in an archive: its member's path there
    return {"version": "0.2.1", "img_width": page.width, "img_height": page.height, "blocks": blocks,
            "img_path": inside[1] if inside else posixpath.basename(page.image_uri)}


def jsonl_row(page: ExportPage) -> dict:
    return {"page_id": page.page_id, "image_uri": page.image_uri, "width": page.width, "height": page.height,
            "engine": page.engine, "volume": page.volume or None,
            "blocks": [{"box": list(b.box), "vertical": b.vertical,
                        "lines": [{"text": ln.text, "box": list(ln.box), "polygon": ln.polygon,
                                   "confidence": ln.confidence, "vertical": ln.vertical,
                                   "words": [{"text": w.text, "box": list(w.box), "confidence": w.confidence}
                                             for w in ln.words]} for ln in b.lines]} for b in page.blocks]}


@dataclass
class ExportSummary:
    format: str
    pages: int
    files: list[str]


def export(out: str, fmt: str, dest: str, engine: str | None = None, title: str | None = None,
           on_warning: Callable[[str], None] | None = None) -> ExportSummary:
    """Write dataset `out` as `fmt` under `dest`; returns what was written. Damaged shards are left
    out, each named to `on_warning`."""
    if fmt not in FORMATS:
        raise UsageError(f"format={fmt!r}: one of {', '.join(FORMATS)}")
    fs, path = storage.url_to_fs(out)
    if not fs.exists(path):
        raise UsageError(f"no dataset at out={out}")
    pages = iter_pages(out, engine, on_warning=on_warning)
    files: list[str] = []
    n = 0
    if fmt in ("alto", "hocr"):
        render, ext = (alto, "xml") if fmt == "alto" else (hocr, "hocr")
        for page in pages:
            rel = posixpath.join(_safe_path(page.volume), f"{_safe(page.page_id)}.{ext}") if page.volume else \
                f"{_safe(page.page_id)}.{ext}"
            files.append(_put(dest, rel, render(page)))
            n += 1
    elif fmt == "jsonl":
        with _Stream(dest, "pages.jsonl") as f:
            for page in pages:
                f.write(_json(jsonl_row(page)) + "\n")
                n += 1
        files.append(storage.join(dest, "pages.jsonl"))
    elif fmt == "mokuro":
        n, files = _export_mokuro(pages, dest, title)
    else:
        n = _export_coco(pages, dest)
        files.append(storage.join(dest, "annotations.json"))
    return ExportSummary(fmt, n, files)


class _Stream:
    """A file under `dest` written as it goes and moved into place when whole."""

    def __init__(self, dest: str, rel: str):
        self.fs, self.path = storage.url_to_fs(storage.join(dest, rel))

    def __enter__(self):
        self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        self.f = self.fs.open(self.path + ".tmp", "w", encoding="utf-8")
        return self.f

    def __exit__(self, exc_type, exc, tb):
        self.f.close()
        if exc_type is None:
            self.fs.mv(self.path + ".tmp", self.path)
        else:
            self.fs.rm(self.path + ".tmp")


def _export_mokuro(pages: Iterator[ExportPage], dest: str, title: str | None) -> tuple[int, list[str]]:
    """One `.mokuro` per volume, its pages streamed into the file's `pages` array."""
    n, files, current, stream, f = 0, [], None, None, None
    series = title or "comic-ocr-etl"
    for page in pages:
        volume = page.volume or "volume"
        if volume != current:
            if stream:
                f.write("]}\n")
                stream.__exit__(None, None, None)
            current, first = volume, True
            stream = _Stream(dest, f"{_safe_path(volume)}.mokuro")
            f = stream.__enter__()
            head = {"version": "0.2.1", "title": series, "title_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, series)),
                    "volume": volume, "volume_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{series}/{volume}"))}
            f.write(_json(head)[:-1] + ', "pages": [')
            files.append(storage.join(dest, f"{_safe_path(volume)}.mokuro"))
        f.write(("" if first else ", ") + _json(mokuro_page(page)))
        first = False
        n += 1
    if stream:
        f.write("]}\n")
        stream.__exit__(None, None, None)
    return n, files


def _export_coco(pages: Iterator[ExportPage], dest: str) -> int:
    """COCO detection annotations (category `text_line`), streamed: images and annotations go to
    two temporary files joined at the end."""
    import tempfile

    n, ann_id = 0, 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as images, \
            tempfile.TemporaryFile("w+", encoding="utf-8") as anns:
        for page in pages:
            n += 1
            images.write(("," if n > 1 else "") + _json(
                {"id": n, "file_name": page.image_uri, "width": page.width, "height": page.height,
                 "page_id": page.page_id}))
            for block in page.blocks:
                for line in block.lines:
                    ann_id += 1
                    x0, y0, x1, y1 = line.box
                    poly = line.polygon or [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
                    anns.write(("," if ann_id > 1 else "") + _json(
                        {"id": ann_id, "image_id": n, "category_id": 1, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "segmentation": [[c for p in poly for c in p]], "text": line.text,
                         "confidence": line.confidence, "vertical": line.vertical}))
        with _Stream(dest, "annotations.json") as f:
            f.write('{"info": {"description": "comic-ocr-etl text lines"}, "categories": '
                    '[{"id": 1, "name": "text_line", "supercategory": "text"}], "images": [')
            for part, tail in ((images, '], "annotations": ['), (anns, "]}\n")):
                part.seek(0)
                while chunk := part.read(1 << 20):
                    f.write(chunk)
                f.write(tail)
    return n
