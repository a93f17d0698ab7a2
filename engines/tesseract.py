"""Tesseract, comic-aware.

Tesseract's page layout analysis fails on comic art (hatching reads as text
columns, side-by-side bubbles merge). So by default (`layout=regions`) a text
detector finds the lines first; the line crops (outside the detected outline
masked to white, scaled to a steady text height) are stacked on one clean
canvas that Tesseract reads in a single call with `--psm 6`, and each word is
mapped back to page pixels. `layout=page` is plain full-page Tesseract.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from engines.base import Engine, check_reading, hashed_as_rtl_flag, old_rtl_flag, reads_rtl
from engines.layout import Box, Line, assemble, reading_sequence, union_all
from engines.words import load_words, mend_lines, version_note
from engines.contract import ConfigError, EngineError, PageTimeout
from engines.contract import PageResult

# Two-letter codes users type -> Tesseract's traineddata names.
LANG_ALIASES = {
    "en": "eng", "ja": "jpn", "zh": "chi_sim", "zh-cn": "chi_sim", "zh-tw": "chi_tra", "ko": "kor",
    "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "pt": "por", "ru": "rus", "nl": "nld",
}
GAP = 24  # white space between stacked crops, px
MAX_CANVAS_H = 12000  # Tesseract reads up to 32767 px; keep canvases modest


def _import_pytesseract():
    """pytesseract, without the pandas it imports for an output type this adapter never asks for:
    pandas' import (0.2-0.4 s) is paid by every client, localhost runner and cloud call that
    imports this module. A None in sys.modules makes `import pandas` fail, as if not installed."""
    import sys

    if "pytesseract" in sys.modules or "pandas" in sys.modules:
        import pytesseract
        return pytesseract
    sys.modules["pandas"] = None
    try:
        import pytesseract
    finally:
        del sys.modules["pandas"]
    return pytesseract


pytesseract = _import_pytesseract()


@dataclass
class TesseractOptions:
    lang: str = "eng"
    layout: str = "regions"  # regions | page
    psm: int | None = None  # default: 6 on the stacked regions, 3 for layout=page
    oem: int | None = None
    timeout: float = 60.0  # seconds per Tesseract call; the process is killed after
    line_height: int = 40  # crops are scaled so text lines are about this tall
    det_side: int = 736  # detector input: shorter side scaled to at least this
    det_box_thresh: float = 0.5
    threads: int = 1  # OMP_THREAD_LIMIT / ONNX threads: one process per core is faster
    reading: str = "auto"  # auto (rtl for Japanese) | ltr | rtl: the order of blocks side by side
    mend: bool = True  # split words run together, mend digits read for letters (engines.words)

    def __post_init__(self):
        self.lang = "+".join(LANG_ALIASES.get(p.strip().lower(), p.strip()) for p in self.lang.split("+") if p.strip())
        if not self.lang:
            raise ValueError("lang is empty")
        if self.layout not in ("regions", "page"):
            raise ValueError(f"layout must be 'regions' or 'page', not {self.layout!r}")
        check_reading(self.reading)

    @property
    def rtl(self) -> bool:
        return reads_rtl(self.reading, self.lang.startswith("jpn") or "+jpn" in self.lang)

    def hash_view(self) -> dict:
        """As `rtl` (a flag, set for Japanese) was hashed before it became `reading`."""
        return hashed_as_rtl_flag(self)


class TesseractEngine(Engine):
    name = "tesseract"
    Options = TesseractOptions
    RENAMED = {"rtl": ("reading", old_rtl_flag)}

    @classmethod
    def preload_modules(cls, options: TesseractOptions) -> tuple[str, ...]:
        # pytesseract (0.1 s) and RapidOCR's detector stack 1.2 s: paid once
        # per localhost job instead of once per call. Neither starts a thread at import.
        return (cls.__module__, "rapidocr.main") if options.layout == "regions" else (cls.__module__,)

    @classmethod
    def cost_entry(cls, options: TesseractOptions) -> str:
        # Plain full-page Tesseract has neither the detector's load nor its per-page work.
        return "tesseract" if options.layout == "regions" else "tesseract:layout=page"

    @classmethod
    def check(cls, options: TesseractOptions) -> None:
        try:
            installed = set(pytesseract.get_languages(config=""))
        except (pytesseract.TesseractNotFoundError, OSError):
            raise ConfigError(
                "the tesseract binary is not installed or not on PATH "
                "(Debian/Ubuntu: apt-get install tesseract-ocr tesseract-ocr-eng)"
            ) from None
        missing = [p for p in options.lang.split("+") if p not in installed]
        if missing:
            pkgs = " ".join(f"tesseract-ocr-{m.replace('_', '-')}" for m in missing)
            raise ConfigError(
                f"Tesseract language data not installed: {', '.join(missing)} "
                f"(installed: {', '.join(sorted(installed))}); install it with `apt-get install {pkgs}` "
                "or point TESSDATA_PREFIX at a folder holding the .traineddata files"
            )

    def __init__(self, options: TesseractOptions):
        super().__init__(options)
        if options.mend:  # the word list loads with the model: part of the batch's cold start
            load_words(options.lang)
        os.environ["OMP_THREAD_LIMIT"] = str(options.threads)
        self._tess_version = tesseract_version()
        self._detector = None
        if options.layout == "regions":
            from engines.detect import TextDetector

            self._detector = TextDetector(side=options.det_side, box_thresh=options.det_box_thresh, threads=options.threads)

    def version(self) -> str:
        v = f"tesseract {self._tess_version}{version_note(self.options.lang, self.options.mend)}"
        return f"{v}; {self._detector.version}" if self._detector else v

    def _config(self, default_psm: int) -> str:
        o = self.options
        cfg = f"--psm {o.psm if o.psm is not None else default_psm}"
        return cfg + (f" --oem {o.oem}" if o.oem is not None else "")

    def _data(self, image: Image.Image, default_psm: int) -> dict:
        # Handed to Tesseract as an uncompressed TIFF: pytesseract would encode a PNG, which costs
        # as much CPU as Tesseract's own work on a large painted page, and Leptonica reads PNM
        # pixel by pixel, slower than Tesseract reads the page's own file (BENCHMARKS.md).
        import tempfile

        try:
            with tempfile.NamedTemporaryFile(prefix="comic-ocr-", suffix=".tif") as f:
                plain = image if image.mode in ("L", "RGB") else image.convert("RGB")
                if hasattr(plain, "tag_v2"):  # a TIFF page's own tags and DPI: not for this file
                    plain = plain.copy()
                # `info` still names the source's compression (G4 for a bilevel scan): not for RGB
                plain.save(f, format="TIFF", compression="raw")
                f.flush()
                return pytesseract.image_to_data(
                    f.name, lang=self.options.lang, config=self._config(default_psm),
                    output_type=pytesseract.Output.DICT, timeout=self.options.timeout,
                )
        except RuntimeError as exc:  # pytesseract signals its timeout this way
            if "timeout" in str(exc).lower():
                raise PageTimeout(f"tesseract took longer than {self.options.timeout:g} s") from None
            raise EngineError(f"tesseract failed: {exc}") from None
        except (pytesseract.TesseractError, subprocess.SubprocessError, OSError) as exc:
            raise EngineError(f"tesseract failed: {exc}") from None

    def read(self, image: Image.Image) -> PageResult:
        if self._detector is None:
            return self._read_page(image)
        return self._read_regions(image)

    # -- layout=page: Tesseract's own layout analysis -------------------------------
    def _read_page(self, image: Image.Image) -> PageResult:
        d = self._data(image, default_psm=3)
        lines: dict[tuple, list[int]] = {}
        for i, word in enumerate(d["text"]):
            if word.strip() and float(d["conf"][i]) >= 0:
                lines.setdefault((d["block_num"][i], d["par_num"][i], d["line_num"][i]), []).append(i)
        groups = []
        for key, idx in lines.items():
            words = [
                (d["text"][i].strip(), float(d["conf"][i]) / 100,
                 Box(d["left"][i], d["top"][i], d["left"][i] + d["width"][i], d["top"][i] + d["height"][i]))
                for i in idx
            ]
            groups.append((key[0], words, None))
        return _assemble(groups, self.options.lang if self.options.mend else None)

    # -- layout=regions: detect lines, read them stacked --------------------------------
    def _read_regions(self, image: Image.Image) -> PageResult:
        quads = self._detector(np.asarray(image.convert("RGB")))
        if not quads:
            return PageResult()
        line_seq = reading_sequence([Box(*q.min(0), *q.max(0)) for q in quads], rtl=self.options.rtl)
        gray = image.convert("L")
        words_per_line = self._read_lines(gray, [quads[li] for _, li in line_seq])
        groups = [(bi, words, quads[li]) for (bi, li), words in zip(line_seq, words_per_line)]
        return _assemble(groups, self.options.lang if self.options.mend else None)

    def _read_lines(self, gray: Image.Image, quads: list[np.ndarray]) -> list[list[tuple[str, float, Box]]]:
        """Read each quad's crop; return its words (text, conf 0-1, page box)."""
        crops = [_crop(gray, q, self.options.line_height) for q in quads]
        out: list[list[tuple[str, float, Box]]] = [[] for _ in quads]
        start = 0
        while start < len(crops):  # one Tesseract call per canvas
            end, height = start, GAP
            while end < len(crops) and (end == start or height + crops[end][0].height + GAP <= MAX_CANVAS_H):
                height += crops[end][0].height + GAP
                end += 1
            width = max(c[0].width for c in crops[start:end]) + 2 * GAP
            canvas = Image.new("L", (width, height), 255)
            spans = []
            y = GAP
            for img, _, _ in crops[start:end]:
                canvas.paste(img, (GAP, y))
                spans.append((y, y + img.height))
                y += img.height + GAP
            d = self._data(canvas, default_psm=6)
            for i, word in enumerate(d["text"]):
                if not word.strip() or float(d["conf"][i]) < 0:
                    continue
                cy = d["top"][i] + d["height"][i] / 2
                k = next((k for k, (a, b) in enumerate(spans) if a - GAP / 2 <= cy < b + GAP / 2), None)
                if k is None:
                    continue
                _, (ox, oy), scale = crops[start + k]
                top = spans[k][0]
                box = Box(
                    ox + (d["left"][i] - GAP) / scale, oy + (d["top"][i] - top) / scale,
                    ox + (d["left"][i] + d["width"][i] - GAP) / scale, oy + (d["top"][i] + d["height"][i] - top) / scale,
                )
                out[start + k].append((word.strip(), float(d["conf"][i]) / 100, box, (d["line_num"][i], d["left"][i])))
            start = end
        # Words in Tesseract's line order, then left to right; drop the sort key.
        return [[w[:3] for w in sorted(ws, key=lambda w: w[3])] for ws in out]


@functools.cache
def tesseract_version() -> str:
    """The binary's version: a subprocess, run once per process (or once per localhost job,
    in the runner before it forks the calls: prepare_to_fork)."""
    return str(pytesseract.get_tesseract_version())


def prepare_to_fork() -> None:
    """The localhost runner's one-time work for this engine (Engine.preload_modules). Without
    a binary it raises, the runner passes over it, and each call reports the engine's start-up
    error (a failure is not cached)."""
    tesseract_version()


def _crop(gray: Image.Image, quad: np.ndarray, line_height: int) -> tuple[Image.Image, tuple[float, float], float]:
    """The quad's pixels on white (neighbouring lines and art masked out), scaled.

    Returns the crop, the page position of its (0, 0) and its scale; a white
    border of `pad` px is added, accounted for in the origin.
    """
    x0, y0 = np.floor(quad.min(0)).astype(int)
    x1, y1 = np.ceil(quad.max(0)).astype(int)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(gray.width, max(x1, x0 + 1)), min(gray.height, max(y1, y0 + 1))
    crop = gray.crop((x0, y0, x1, y1))
    mask = Image.new("L", crop.size, 0)
    ImageDraw.Draw(mask).polygon([(float(x - x0), float(y - y0)) for x, y in quad], fill=255)
    crop = Image.composite(crop, Image.new("L", crop.size, 255), mask)
    scale = line_height / max(1, y1 - y0)
    if not 0.8 <= scale <= 1.25:
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.LANCZOS)
        scale = crop.height / max(1, y1 - y0)
    else:
        scale = 1.0
    pad = 8
    crop = ImageOps.expand(crop, border=pad, fill=255)
    return crop, (x0 - pad / scale, y0 - pad / scale), scale


def _assemble(groups: list[tuple[int, list[tuple[str, float, Box]], np.ndarray | None]],
              mend_lang: str | None) -> PageResult:
    """(block key, words, quad) per line, in reading order -> elements and page text; words mended
    (`engines.words`) in `mend_lang`'s word list (None: as read)."""
    lines = []
    for key, words, quad in groups:
        if not words:
            continue
        box, polygon = union_all(b for _, _, b in words), None
        if quad is not None:
            box = Box(*quad.min(0), *quad.max(0))
            polygon = [(float(x), float(y)) for x, y in quad]
        lines.append((key, Line(" ".join(w for w, _, _ in words), float(np.mean([c for _, c, _ in words])), box,
                                polygon, words)))
    if mend_lang is not None:
        lines = list(zip([k for k, _ in lines], mend_lines([ln for _, ln in lines], mend_lang)))
    return assemble(lines)
