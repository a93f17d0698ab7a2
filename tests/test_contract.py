"""The engine contract on its own: engines need nothing of the pipeline, and `read_lines` (a cascade
stage's hook) reads just the lines it is given, in their boxes and places."""

import subprocess
import sys

from PIL import Image, ImageDraw

from engines import get_engine


def test_the_engines_import_nothing_of_the_pipeline():
    code = ("import sys, engines, engines.base, engines.contract, engines.layout, engines.detect, engines.tesseract, "
            "engines.ppocrv6, engines.vlm, engines.models, engines.redact\n"
            "print(sorted(m for m in sys.modules if m == 'etl' or m.startswith('etl.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_read_lines_reads_each_given_line_in_its_box_and_place():
    from tools.synthetic import _font  # the font the generated pages use

    img = Image.new("L", (900, 300), 255)
    draw = ImageDraw.Draw(img)
    font = _font(36)
    draw.text((40, 40), "THE FIRST LINE", font=font, fill=0)
    draw.text((40, 180), "ANOTHER ONE HERE", font=font, fill=0)
    cls = get_engine("tesseract")
    engine = cls(cls.parse_options({}))
    try:
        lines = [{"line_no": 7, "x0": 30, "y0": 170, "x1": 520, "y1": 230, "block_id": 2},
                 {"line_no": 3, "x0": 30, "y0": 30, "x1": 480, "y1": 90, "block_id": 1}]
        result = engine.read_lines(img, lines)
    finally:
        engine.close()
    assert [e.text for e in result.elements] == ["ANOTHER ONE HERE", "THE FIRST LINE"]
    assert [(e.reading_order, e.line_id, e.block_id, e.level) for e in result.elements] == [(7, 7, 2, "line"), (3, 3, 1, "line")]
    assert [(e.x0, e.y0, e.x1, e.y1) for e in result.elements] == [(30, 170, 520, 230), (30, 30, 480, 90)]
    assert all(0 < e.confidence <= 1 for e in result.elements)
