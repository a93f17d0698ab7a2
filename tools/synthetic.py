"""Synthetic comic pages with known text: examples, tests and benchmarks.

Pages imitate what breaks plain OCR on comics: panels full of line art and
hatching, speech bubbles (ellipses with tails), caption boxes and side-by-side
bubbles. Everything is drawn from a seed, so a page and its transcript are
reproducible and free to redistribute.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# Common, unambiguous English words: comics are mostly dialogue.
WORDS = """
about after again all almost always another answer around away back because before behind
believe better between big black both bring brother call came can city close cold come could
danger dark day dead did different door down dream during each early earth end enough even
every eyes face family far fast father feel fight find fire first follow food forget found
friend from front game gave girl give gone good great green hand happy hard have head hear
heart help here hide high home hope horse hour house how hurry idea inside island just keep
kind king knew know last late laugh leave left light like listen little live long look lost
love machine make many maybe mean might mind minute money moon more morning mother move much
must name near need never night nothing now ocean off old once only open other over people
perhaps place plan please power quick quiet ready real remember right river road rocket room
run safe said same saw say school secret see seem shadow ship should show side sign silver
since sleep slow small something soon sorry sound space speak star start stay still stop
storm story strange street strong sure take talk tell thank that their then there these
thing think this those three through time today together told tomorrow tonight took tower
train tree true trust try turn under until very wait walk want warm watch water way well
went were what when where which while who why wild will wind window with without woman
wonder word work world would wrong year yes yesterday you young
""".split()

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


@dataclass
class TextLine:
    text: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in page pixels


@dataclass
class Page:
    page_id: str
    width: int
    height: int
    lines: list[TextLine] = field(default_factory=list)
    furigana: list[str] = field(default_factory=list)  # readings printed beside the text, not part of it

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def _font(size: int) -> ImageFont.ImageFont:
    for path in FONT_CANDIDATES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)  # Pillow's bundled scalable font


def _hatching(draw: ImageDraw.ImageDraw, box, rng: random.Random) -> None:
    """Line art: hatching, cross-hatching, figures and scribbles."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    # Hatched background over most of the panel (what defeats page layout analysis),
    # then a few denser cross-hatched patches.
    areas = [(x0, y0, x1, y1)] + [
        (hx, hy, min(x1, hx + rng.randint(w // 4, w // 2)), min(y1, hy + rng.randint(h // 4, h // 2)))
        for hx, hy in ((rng.randint(x0, x0 + w // 2), rng.randint(y0, y0 + h // 2)) for _ in range(rng.randint(1, 3)))
    ]
    for i, (hx0, hy0, hx1, hy1) in enumerate(areas):
        step = rng.randint(9, 14) if i == 0 else rng.randint(5, 8)
        for angle in rng.sample([30, 45, 60, 120, 135, 150], 1 if i == 0 else 2):
            dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            length = max(hx1 - hx0, hy1 - hy0) * 2
            for off in range(-length, length, step):
                cx, cy = (hx0 + hx1) / 2 - dy * off, (hy0 + hy1) / 2 + dx * off
                pts = [(cx - dx * length, cy - dy * length), (cx + dx * length, cy + dy * length)]
                seg = _clip_segment(pts, (hx0, hy0, hx1, hy1))
                if seg:
                    draw.line(seg, fill=0, width=rng.choice([1, 1, 2]))
    for _ in range(rng.randint(2, 5)):  # figures: heads, bodies, buildings
        cx, cy = rng.randint(x0, x1), rng.randint(y0, y1)
        r = rng.randint(20, max(21, min(w, h) // 4))
        if rng.random() < 0.5:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=0, width=3)
        else:
            draw.rectangle((cx - r, cy - 2 * r, cx + r, cy + r), outline=0, width=3)
    for _ in range(rng.randint(3, 8)):  # scribbles
        pts = [(rng.randint(x0, x1), rng.randint(y0, y1)) for _ in range(rng.randint(3, 6))]
        draw.line(pts, fill=0, width=rng.randint(1, 3))


def _clip_segment(pts, box):
    """Liang-Barsky clip of a segment to a box; None when outside."""
    (xa, ya), (xb, yb) = pts
    x0, y0, x1, y1 = box
    dx, dy = xb - xa, yb - ya
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, xa - x0), (dx, x1 - xa), (-dy, ya - y0), (dy, y1 - ya)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return [(xa + t0 * dx, ya + t0 * dy), (xa + t1 * dx, ya + t1 * dy)]


def _sentence(rng: random.Random, n_words: int) -> list[str]:
    return [rng.choice(WORDS).upper() for _ in range(n_words)]


def _wrap(words: list[str], per_line: int) -> list[str]:
    return [" ".join(words[i : i + per_line]) for i in range(0, len(words), per_line)]


def _place_text(draw, lines, font, cx, top, line_h) -> list[TextLine]:
    placed = []
    for i, line in enumerate(lines):
        l, t, r, b = draw.textbbox((0, 0), line, font=font)
        x = int(cx - (r - l) / 2)
        y = int(top + i * line_h)
        draw.text((x - l, y - t), line, font=font, fill=0)
        placed.append(TextLine(line, (x, y, x + (r - l), y + (b - t))))
    return placed


def _bubble(draw, rng, panel, font, line_h) -> list[TextLine]:
    x0, y0, x1, y1 = panel
    lines = _wrap(_sentence(rng, rng.randint(3, 7)), rng.randint(2, 3))
    widths = [draw.textbbox((0, 0), s, font=font)[2] for s in lines]
    tw, th = max(widths), line_h * len(lines)
    bw, bh = int(tw * 1.35) + 30, int(th * 1.6) + 30
    bw = min(bw, x1 - x0 - 20)
    cx = rng.randint(x0 + 10 + bw // 2, max(x0 + 11 + bw // 2, x1 - 10 - bw // 2))
    cy = rng.randint(y0 + 10 + bh // 2, max(y0 + 11 + bh // 2, y0 + (y1 - y0) // 2))
    box = (cx - bw // 2, cy - bh // 2, cx + bw // 2, cy + bh // 2)
    tail = [(cx - 15, box[3] - 5), (cx + 15, box[3] - 5), (cx + rng.randint(-60, 60), box[3] + 45)]
    draw.polygon(tail, fill=255, outline=0)
    draw.ellipse(box, fill=255, outline=0, width=3)
    draw.line(tail[0:1] + tail[2:3] + tail[1:2], fill=0, width=3)
    return _place_text(draw, lines, font, cx, cy - th / 2, line_h)


def _caption(draw, rng, panel, font, line_h) -> list[TextLine]:
    x0, y0, x1, y1 = panel
    lines = _wrap(_sentence(rng, rng.randint(3, 6)), rng.randint(3, 4))
    widths = [draw.textbbox((0, 0), s, font=font)[2] for s in lines]
    bw, bh = max(widths) + 30, line_h * len(lines) + 24
    if rng.random() < 0.5:
        box = (x0 + 6, y1 - 6 - bh, x0 + 6 + bw, y1 - 6)
    else:
        box = (x0 + 6, y0 + 6, x0 + 6 + bw, y0 + 6 + bh)
    draw.rectangle(box, fill=235, outline=0, width=2)
    return _place_text(draw, lines, font, (box[0] + box[2]) / 2, box[1] + 12, line_h)


def make_page(seed: int, page_id: str | None = None, width: int = 1200, height: int = 1700) -> tuple[Image.Image, Page]:
    """Draw one art-heavy comic page; return the image (mode L) and its transcript."""
    rng = random.Random(seed)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    page = Page(page_id or f"synthetic-{seed:04d}", width, height)
    margin, gutter = 40, 24
    rows = rng.choice([2, 3, 3])
    row_h = (height - 2 * margin - (rows - 1) * gutter) // rows
    font_size = rng.choice([26, 28, 30])
    font = _font(font_size)
    line_h = int(font_size * 1.3)
    for r in range(rows):
        cols = rng.choice([1, 2, 2])
        col_w = (width - 2 * margin - (cols - 1) * gutter) // cols
        for c in range(cols):
            panel = (
                margin + c * (col_w + gutter),
                margin + r * (row_h + gutter),
                margin + c * (col_w + gutter) + col_w,
                margin + r * (row_h + gutter) + row_h,
            )
            inner = (panel[0] + 4, panel[1] + 4, panel[2] - 4, panel[3] - 4)
            art = Image.new("L", (inner[2] - inner[0], inner[3] - inner[1]), 255)
            _hatching(ImageDraw.Draw(art), (0, 0, art.width, art.height), rng)
            img.paste(art, inner[:2])  # art stays inside its panel
            draw.rectangle(panel, outline=0, width=5)
            # Bubbles first (top half), then a caption: reading order within the panel.
            page.lines += _bubble(draw, rng, inner, font, line_h)
            if rng.random() < 0.5:
                page.lines += _caption(draw, rng, inner, font, line_h)
    return img, page


def make_strip(seed: int, pages: int = 8, width: int = 480, page_id: str | None = None) -> tuple[Image.Image, Page]:
    """A webtoon-style strip: `pages` comic pages, each scaled to `width`, stacked top to bottom
    (aspect about 1.4 x pages). The transcript is the pages' in order, boxes in strip pixels."""
    scale = width / 1200
    height = round(1700 * scale)
    strip = Image.new("L", (width, height * pages), 255)
    page = Page(page_id or f"strip-{seed:04d}", width, height * pages)
    for i in range(pages):
        img, part = make_page(seed + i)
        strip.paste(img.resize((width, height), Image.LANCZOS), (0, i * height))
        for line in part.lines:
            x0, y0, x1, y1 = line.box
            page.lines.append(TextLine(line.text, (round(x0 * scale), round(y0 * scale) + i * height,
                                                   round(x1 * scale), round(y1 * scale) + i * height)))
    return strip, page


# Everyday Japanese phrases for manga pages: no small kana, long-vowel marks or
# punctuation, which vertical writing would rotate or shift.
JA_PHRASES = """
今日は晴れ 本当にありがとう どこへ行くの 早く逃げて 大丈夫だよ 信じている また明日ね 静かにして
約束したよね 一緒に帰ろう 名前を教えて 空を見上げた 雨が降りそう 私も行きたい 友達になろう
海の向こうへ 夢を見ていた 手を放さないで 夜明けが来る 忘れないで 先生を呼んで 道に迷った
""".split()
JA_FONTS = ("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
            "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf")


def _ja_font(size: int) -> ImageFont.ImageFont:
    for path in JA_FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    raise FileNotFoundError("no Japanese font: apt-get install fonts-ipafont-gothic")


RUBY = ("きょう", "ほんとう", "だいじょうぶ", "やくそく", "なまえ", "ともだち", "せんせい", "みち")


def make_manga_page(seed: int, page_id: str | None = None, width: int = 1200, height: int = 1700,
                    furigana: bool = False) -> tuple[Image.Image, Page]:
    """A manga page: panels read right to left, tall bubbles of vertical Japanese columns
    (each column top to bottom, columns right to left). The transcript is in that order,
    one column per line. With `furigana`, the first column of each bubble has a small kana
    reading beside it, on its right, as manga print them; readings are not in the transcript
    (they are in `page.furigana`)."""
    rng = random.Random(seed)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    page = Page(page_id or f"manga-{seed:04d}", width, height)
    ruby_font = _ja_font(size_ruby := 15) if furigana else None
    margin, gutter, rows = 40, 24, 2
    size = rng.choice([34, 38])
    font = _ja_font(size)
    row_h = (height - 2 * margin - gutter) // rows
    col_w = (width - 2 * margin - gutter) // 2
    for r in range(rows):
        for c in (1, 0):  # right panel first
            panel = (margin + c * (col_w + gutter), margin + r * (row_h + gutter),
                     margin + c * (col_w + gutter) + col_w, margin + r * (row_h + gutter) + row_h)
            inner = (panel[0] + 4, panel[1] + 4, panel[2] - 4, panel[3] - 4)
            art = Image.new("L", (inner[2] - inner[0], inner[3] - inner[1]), 255)
            _hatching(ImageDraw.Draw(art), (0, 0, art.width, art.height), rng)
            img.paste(art, inner[:2])
            draw.rectangle(panel, outline=0, width=5)
            columns = rng.sample(JA_PHRASES, rng.randint(2, 3))
            step = int(size * 1.1)
            col_gap = int(size * 1.5)
            text_h = max(len(p) for p in columns) * step
            bw, bh = len(columns) * col_gap + 90, text_h + 110
            cx = inner[0] + (inner[2] - inner[0]) // 2 + rng.randint(-60, 60)
            cy = inner[1] + 30 + bh // 2
            draw.ellipse((cx - bw // 2, cy - bh // 2, cx + bw // 2, cy + bh // 2), fill=255, outline=0, width=3)
            top = cy - text_h // 2
            for k, phrase in enumerate(columns):  # rightmost column first
                x = cx + (len(columns) - 1) * col_gap / 2 - k * col_gap
                for j, ch in enumerate(phrase):
                    l, t, rr, b = draw.textbbox((0, 0), ch, font=font)
                    draw.text((x - (l + rr) / 2, top + j * step - t), ch, font=font, fill=0)
                page.lines.append(TextLine(phrase, (int(x - size / 2), top, int(x + size / 2), top + len(phrase) * step)))
                if ruby_font is not None and k == 0:
                    reading = rng.choice(RUBY)
                    rx = x + size / 2 + size_ruby * 0.5 + 6
                    for j, ch in enumerate(reading):
                        l, t, rr, b = draw.textbbox((0, 0), ch, font=ruby_font)
                        draw.text((rx - (l + rr) / 2, top + j * int(size_ruby * 1.1) - t), ch, font=ruby_font, fill=0)
                    page.furigana.append(reading)
    return img, page


def write_pages(folder: str | Path, n: int, seed: int = 0, prefix: str = "page", images: str = "") -> list[Page]:
    """Write n pages as PNG (under `images/` when given) plus `truth.jsonl`
    (page_id, text, lines with boxes) and `manifest.csv` (paths relative to it)."""
    folder = Path(folder)
    (folder / images).mkdir(parents=True, exist_ok=True)
    pages = []
    with open(folder / "truth.jsonl", "w") as truth, open(folder / "manifest.csv", "w") as manifest:
        manifest.write("page_id,image_uri\n")
        for i in range(n):
            img, page = make_page(seed + i, f"{prefix}-{i:03d}")
            name = f"{images}/{page.page_id}.png" if images else f"{page.page_id}.png"
            img.save(folder / name, optimize=True)
            manifest.write(f"{page.page_id},{name}\n")
            truth.write(json.dumps({"page_id": page.page_id, "text": page.text,
                                    "lines": [asdict(line) for line in page.lines]}) + "\n")
            pages.append(page)
    return pages


EXAMPLE_MANGA = ("manga-generated-01", 2026)  # page id, seed of the bundled generated manga page
EXAMPLE_MANGA_FILE = "comics/generated-manga/01.png"  # where it lies under examples/


def write_example_manga(folder: str | Path = "examples") -> Page:
    """(Re)write the examples' generated manga page and its row in `truth.jsonl`, leaving the real pages' rows."""
    folder = Path(folder)
    page_id, seed = EXAMPLE_MANGA
    img, page = make_manga_page(seed, page_id)
    image = folder / EXAMPLE_MANGA_FILE
    image.parent.mkdir(parents=True, exist_ok=True)
    img.save(image, optimize=True)
    truth = folder / "truth.jsonl"
    rows = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines()] if truth.is_file() else []
    row = {"page_id": page_id, "text": page.text, "lang": "ja", "work": f"generated by tools.synthetic.make_manga_page (seed {seed})",
           "licence": "generated by this project: free to redistribute", "lines": [asdict(line) for line in page.lines]}
    rows = [r for r in rows if r["page_id"] != page_id] + [row]
    truth.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return page


if __name__ == "__main__":  # python -m tools.synthetic examples | FOLDER [N] [SEED]
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "examples"
    if target == "examples" and len(sys.argv) <= 2:
        write_example_manga(target)
        print(f"{EXAMPLE_MANGA[0]} -> {target}/{EXAMPLE_MANGA_FILE}, {target}/truth.jsonl")
        sys.exit(0)
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    write_pages(target, count, seed=int(sys.argv[3]) if len(sys.argv) > 3 else 2026, images="pages")
    print(f"{count} pages -> {target}/manifest.csv, {target}/truth.jsonl")
