"""Reading order for comic pages: lines -> blocks (bubbles, captions) -> order.

Lines that overlap horizontally and sit within about one line height of each
other form a block (a bubble or caption). Blocks are read in rows, top to
bottom; within a row (blocks side by side), left to right, or right to left
for manga (`rtl=True`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def h(self) -> float:
        return self.y1 - self.y0

    def union(self, other: "Box") -> "Box":
        return Box(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1), max(self.y1, other.y1))


def union_all(boxes) -> Box:
    """The smallest box holding all of `boxes` (an iterable of at least one Box)."""
    it = iter(boxes)
    out = next(it)
    for b in it:
        out = out.union(b)
    return out


def group_blocks(lines: list[Box], gap: float = 0.8, overlap: float = 0.3) -> list[list[int]]:
    """Indices of `lines` grouped into blocks, lines in each block top to bottom."""
    parent = list(range(len(lines)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(lines)), key=lambda i: lines[i].y0)
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
    return [sorted(g, key=lambda i: (lines[i].y0 + lines[i].y1) / 2) for g in groups.values()]


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


def reading_sequence(lines: list[Box], rtl: bool = False) -> list[tuple[int, int]]:
    """(block index, line index) for every line, in reading order."""
    blocks = group_blocks(lines)
    order = order_blocks([union_all(lines[i] for i in g) for g in blocks], rtl=rtl)
    return [(bi, li) for bi in order for li in blocks[bi]]
