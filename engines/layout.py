"""Reading order for comic pages: lines -> blocks (bubbles, captions) -> order -> elements.

Lines that overlap horizontally and sit within about one line height of each
other form a block (a bubble or caption); vertical lines (columns of CJK text)
that overlap vertically and sit within about one column width side by side do
too, and are read right to left. Blocks are read in rows, top to bottom; within
a row (blocks side by side), left to right, or right to left for manga (`rtl=True`).
`assemble` turns lines in that order into the common word/line/block elements.
"""

from __future__ import annotations


from dataclasses import dataclass, field

from engines.contract import Element, PageResult
from engines.lang import KANA_ONLY


@dataclass
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def h(self) -> float:
        return self.y1 - self.y0

    @classmethod
    def around(cls, points) -> "Box":
        """The upright box around (x, y) points."""
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return cls(min(xs), min(ys), max(xs), max(ys))

    def union(self, other: "Box") -> "Box":
        return Box(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1), max(self.y1, other.y1))


def union_all(boxes) -> Box:
    """The smallest box holding all of `boxes` (an iterable of at least one Box)."""
    it = iter(boxes)
    out = next(it)
    for b in it:
        out = out.union(b)
    return out


def is_vertical(box: Box, text: str) -> bool:
    """A column of text: clearly taller than wide, and more than one character."""
    return len(text.strip()) >= 2 and (box.y1 - box.y0) > 1.5 * (box.x1 - box.x0)


def group_blocks(lines: list[Box], gap: float = 0.8, overlap: float = 0.3,
                 vertical: list[bool] | None = None) -> list[list[int]]:
    """Indices of `lines` grouped into blocks: lines in each block top to bottom,
    columns (`vertical`) right to left."""
    vertical = vertical or [False] * len(lines)
    parent = list(range(len(lines)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    _join_columns(lines, vertical, gap, overlap, find, parent)
    order = sorted((i for i in range(len(lines)) if not vertical[i]), key=lambda i: lines[i].y0)
    for a_pos, a in enumerate(order):
        la = lines[a]
        for b in order[a_pos + 1 :]:
            lb = lines[b]
            height = max(1.0, min(la.h, lb.h))
            if lb.y0 - la.y1 > gap * height:
                break  # sorted by top: every later line is further down
            ov = min(la.x1, lb.x1) - max(la.x0, lb.x0)
            if ov > overlap * min(la.x1 - la.x0, lb.x1 - lb.x0) and abs(la.h - lb.h) < 0.6 * max(la.h, lb.h):
                parent[find(b)] = find(a)
    groups: dict[int, list[int]] = {}
    for i in range(len(lines)):
        groups.setdefault(find(i), []).append(i)
    return [sorted(g, key=lambda i: (-(lines[i].x0 + lines[i].x1) / 2, lines[i].y0) if vertical[i]
                   else ((lines[i].y0 + lines[i].y1) / 2, 0)) for g in groups.values()]


def _join_columns(lines, vertical, gap, overlap, find, parent) -> None:
    """Union neighbouring columns: side by side, overlapping vertically, of similar width."""
    cols = sorted((i for i in range(len(lines)) if vertical[i]), key=lambda i: lines[i].x0)
    for a_pos, a in enumerate(cols):
        la = lines[a]
        for b in cols[a_pos + 1 :]:
            lb = lines[b]
            width = max(1.0, min(la.x1 - la.x0, lb.x1 - lb.x0))
            if lb.x0 - la.x1 > gap * width:
                break  # sorted by left edge: every later column is further right
            ov = min(la.y1, lb.y1) - max(la.y0, lb.y0)
            wa, wb = la.x1 - la.x0, lb.x1 - lb.x0
            if ov > overlap * min(la.h, lb.h) and abs(wa - wb) < 0.6 * max(wa, wb):
                parent[find(b)] = find(a)


def order_blocks(blocks: list[Box], rtl: bool = False) -> list[int]:
    """Indices of `blocks` in reading order."""
    rows: list[list[int]] = []
    row_bottom = None
    for i in sorted(range(len(blocks)), key=lambda i: blocks[i].y0):
        b = blocks[i]
        if rows and b.y0 < row_bottom:
            rows[-1].append(i)
            row_bottom = min(row_bottom, b.y1)
        else:
            rows.append([i])
            row_bottom = b.y1
    key = (lambda i: -blocks[i].x1) if rtl else (lambda i: blocks[i].x0)
    return [i for row in rows for i in sorted(row, key=key)]


def reading_sequence(lines: list[Box], rtl: bool = False, vertical: list[bool] | None = None) -> list[tuple[int, int]]:
    """(block index, line index) for every line, in reading order."""
    blocks = group_blocks(lines, vertical=vertical)
    order = order_blocks([union_all(lines[i] for i in g) for g in blocks], rtl=rtl)
    return [(bi, li) for bi in order for li in blocks[bi]]


@dataclass
class Line:
    """One recognised line (or column) in page pixels, with its words where the engine gives them."""

    text: str
    confidence: float | None
    box: Box
    polygon: list[tuple[float, float]] | None = None
    words: list[tuple[str, float | None, Box]] = field(default_factory=list)
    vertical: bool = False


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def assemble(lines: list[tuple[int, Line]], joiner: str = " ") -> PageResult:
    """(block key, line) in reading order -> word, line and block elements and the page text.

    Page text: lines joined by newlines within a block, blocks by blank lines.
    `joiner` joins a block's lines into the block element's text ("" for CJK).
    """
    elements: list[Element] = []
    block_ids: dict = {}
    block_lines: dict[int, list[Line]] = {}
    order = {"word": 0, "line": 0, "block": 0}

    def add(level: str, **kw) -> None:
        elements.append(Element(level=level, reading_order=order[level], **kw))
        order[level] += 1

    line_id = 0
    for key, line in lines:
        if not line.text.strip():
            continue  # a detected region with no readable text
        block_id = block_ids.setdefault(key, len(block_ids))
        for text, conf, b in line.words:
            add("word", text=text, confidence=conf, x0=b.x0, y0=b.y0, x1=b.x1, y1=b.y1, block_id=block_id,
                line_id=line_id, vertical=line.vertical)
        b = line.box
        add("line", text=line.text, confidence=line.confidence, x0=b.x0, y0=b.y0, x1=b.x1, y1=b.y1,
            polygon=line.polygon, block_id=block_id, line_id=line_id, vertical=line.vertical)
        block_lines.setdefault(block_id, []).append(line)
        line_id += 1
    paragraphs = []
    for block_id, members in block_lines.items():
        box = union_all(m.box for m in members)
        word_confs = [c for m in members for _, c, _ in m.words]
        conf = _mean(word_confs) if word_confs else _mean(m.confidence for m in members)
        add("block", text=joiner.join(m.text for m in members), confidence=conf,
            x0=box.x0, y0=box.y0, x1=box.x1, y1=box.y1, block_id=block_id,
            vertical=all(m.vertical for m in members))
        paragraphs.append("\n".join(m.text for m in members))
    return PageResult(elements=elements, text="\n\n".join(paragraphs))


def assemble_in_reading_order(lines: list[Line], rtl: bool, joiner: str = " ") -> PageResult:
    """Lines in any order -> blocks, reading order (`reading_sequence`) and elements (`assemble`).

    Furigana (`split_furigana`) are kept out of the blocks and the page text: each becomes an
    element of level "furigana", tied by line_id and block_id to the column it reads.
    """
    lines, ruby = split_furigana(lines)
    seq = reading_sequence([ln.box for ln in lines], rtl=rtl, vertical=[ln.vertical for ln in lines])
    result = assemble([(bi, lines[li]) for bi, li in seq], joiner=joiner)
    if ruby:
        placed = {(e.x0, e.y0, e.x1, e.y1): e for e in result.elements if e.level == "line"}
        for order, (line, base) in enumerate(ruby):
            b, host = line.box, placed.get((base.box.x0, base.box.y0, base.box.x1, base.box.y1))
            result.elements.append(Element(
                text=line.text, level="furigana", confidence=line.confidence, x0=b.x0, y0=b.y0, x1=b.x1, y1=b.y1,
                polygon=line.polygon, block_id=host.block_id if host else None, line_id=host.line_id if host else None,
                reading_order=order, vertical=True))
    return result




def split_furigana(lines: list[Line]) -> tuple[list[Line], list[tuple[Line, Line]]]:
    """(the text's lines, [(furigana, the column it reads)]). A furigana is a vertical line of kana
    alone, at most 0.6 times as wide as the page's usual column, that stands against the right edge
    of a full-width column and beside it for at least half its height: the reading printed next
    to the kanji it glosses, which transcripts leave out."""
    columns = [ln for ln in lines if ln.vertical and len(ln.text) >= 3]
    if len(columns) < 2:
        return lines, []
    usual = sorted(ln.box.x1 - ln.box.x0 for ln in columns)[len(columns) // 2]
    ruby, main = [], []
    for ln in lines:
        b, w = ln.box, ln.box.x1 - ln.box.x0
        host = None
        if ln.vertical and w <= 0.6 * usual and KANA_ONLY.match(ln.text):
            for m in lines:
                mb = m.box
                if m is ln or not m.vertical or mb.x1 - mb.x0 < 0.8 * usual:
                    continue
                beside = mb.x0 + 0.5 * (mb.x1 - mb.x0) <= b.x0 and b.x0 - mb.x1 <= w
                overlap = min(b.y1, mb.y1) - max(b.y0, mb.y0)
                if beside and overlap >= 0.5 * (b.y1 - b.y0):
                    host = m
                    break
        if host is not None:
            ruby.append((ln, host))
        else:
            main.append(ln)
    return main, ruby
