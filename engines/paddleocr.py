"""PaddleOCR 3.x with the PP-OCRv5 mobile models (detection + recognition), offline.

The weights come from a package (engines/models.py), so PaddleOCR's model-hub lookup
is switched off. The document-orientation, unwarping and line-orientation models are
not shipped, so those steps stay off. The detector sees the page with its longest side
at `det_max_side` (960 kept full recall on our comic pages at a fifth of full-resolution
time). One recogniser reads Chinese, English, Japanese and accented Latin; lines
come with words (boxes, no scores of their own). PaddleX's cache goes to a
temporary folder, not `~`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import dataclasses
from dataclasses import dataclass
from importlib.metadata import version as dist_version

import numpy as np
from PIL import Image

from engines.base import Engine, check_reading, reads_rtl
from engines.lang import WITHOUT_SPACES
from engines.layout import Box, Line, assemble_in_reading_order, is_vertical
from engines.words import load_words, mend_lines, version_note
from engines.models import locate
from engines.contract import ConfigError, EngineError
from engines.contract import PageResult

log = logging.getLogger(__name__)

DET, REC = "PP-OCRv5_mobile_det", "PP-OCRv5_mobile_rec"
# What the PP-OCRv5 recogniser reads (its dictionary): lang= values we accept, by script.
LATIN = {"en", "fr", "de", "es", "it", "pt", "nl", "ca", "da", "sv", "no", "nb", "fi", "is", "ga", "cy", "eu",
         "gl", "la", "oc", "af", "id", "ms", "tl", "sw", "latin"}
LANGS = {"zh": "zh", "ch": "zh", "chinese_cht": "zh", "zh-hant": "zh", "ja": "ja", "japan": "ja", "jp": "ja",
         **{code: "latin" for code in LATIN}}
CJK_SCRIPTS = WITHOUT_SPACES


@dataclass
class PaddleOcrOptions:
    lang: str = "en"  # en, zh, ja or a Latin-script language (the one PP-OCRv5 recogniser reads all)
    gpu: bool = False  # use CUDA when this Paddle build and a device allow; the CPU otherwise
    det_max_side: int = 960  # the detector's longest side, px (text_det_limit_side_len, type max)
    det_thresh: float = 0.3
    det_box_thresh: float = 0.6
    det_unclip_ratio: float = 1.5
    rec_score_thresh: float = 0.0  # drop lines read with a lower score
    model_dir: str | None = None  # a folder with PP-OCRv5_mobile_det/ and PP-OCRv5_mobile_rec/
    reading: str = "auto"  # auto (rtl for Japanese) | ltr | rtl
    words: bool = True  # word boxes (Latin lines)
    mend: bool = True  # split words run together, mend digits read for letters (engines.words)
    threads: int = 1

    def __post_init__(self):
        self.lang = self.lang.strip().lower()
        if self.lang not in LANGS and self.model_dir is None:
            raise ValueError(
                f"lang={self.lang!r} is not read by the PP-OCRv5 mobile recogniser this project ships (it reads "
                f"zh, en, ja and Latin-script languages: {', '.join(sorted(LANGS))}); for another script, pass "
                "model_dir= with PaddleOCR models for it"
            )
        check_reading(self.reading)
        if self.det_max_side < 64 or self.threads < 1:
            raise ValueError("det_max_side >= 64 and threads >= 1 are required")

    @property
    def script(self) -> str:
        return LANGS.get(self.lang, "latin")

    @property
    def rtl(self) -> bool:
        return reads_rtl(self.reading, self.script == "ja")

    def hash_view(self) -> dict:
        """As the longest side was hashed when it was called `det_side`."""
        view = dataclasses.asdict(self)
        return {**{k: v for k, v in view.items() if k != "det_max_side"}, "det_side": view["det_max_side"]}


class PaddleOcrEngine(Engine):
    name = "paddleocr"
    Options = PaddleOcrOptions
    # det_side is the shorter side in ppocrv6 and tesseract; here it was the longest.
    RENAMED = {"det_side": ("det_max_side", lambda v: v)}
    # Cold start (Paddle + PaddleX imports, two model loads) and seconds per page: costs.yaml.
    # Memory grows as it reads (PaddleOCR#15631; ~17 MB a page here, BENCHMARKS.md): every call
    # is a fresh process, so 16 pages bound a worker at ~1.6 GB.
    max_batch_size = 16

    @classmethod
    def check(cls, options: PaddleOcrOptions) -> None:
        locate("paddleocr", options.model_dir)
        import importlib.util

        for module in ("paddle", "paddleocr"):
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"engine 'paddleocr' needs {module}: pip install 'comic-ocr-etl[paddleocr]'")

    def __init__(self, options: PaddleOcrOptions):
        super().__init__(options)
        if options.mend:  # the word list loads with the model: part of the batch's cold start
            load_words(options.lang)
        folder = locate("paddleocr", options.model_dir)
        # Before PaddleX is imported: no model-hub probe, and its cache off `~`.
        os.environ["PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK"] = "True"
        self._cache = tempfile.TemporaryDirectory(prefix="paddlex-")
        os.environ.setdefault("PADDLE_PDX_CACHE_HOME", self._cache.name)
        import paddle
        from paddleocr import PaddleOCR

        has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
        self.device = "gpu:0" if options.gpu and has_gpu else "cpu"
        self._fallback = options.gpu and not has_gpu
        if self._fallback:
            log.warning("paddleocr: gpu=true but this Paddle build sees no CUDA device; running on the CPU")
        try:
            self.ocr = PaddleOCR(
                text_detection_model_name=DET, text_detection_model_dir=str(folder / DET),
                text_recognition_model_name=REC, text_recognition_model_dir=str(folder / REC),
                use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=False,
                device=self.device, cpu_threads=options.threads,
                text_det_limit_side_len=options.det_max_side, text_det_limit_type="max",
                text_det_thresh=options.det_thresh, text_det_box_thresh=options.det_box_thresh,
                text_det_unclip_ratio=options.det_unclip_ratio, text_rec_score_thresh=options.rec_score_thresh,
            )
        except Exception as exc:  # PaddleX wraps model-folder problems in its own exceptions
            raise ConfigError(f"engine 'paddleocr': cannot load the models in {folder}: {exc}") from None

    def version(self) -> str:
        device = "cpu (gpu=true: no CUDA device)" if self._fallback else self.device
        mended = version_note(self.options.lang, self.options.mend)
        return f"paddleocr {dist_version('paddleocr')} / paddlepaddle {dist_version('paddlepaddle')} ({DET}, {REC}{mended}; {device})"

    def read(self, image: Image.Image) -> PageResult:
        o = self.options
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        try:
            result = self.ocr.predict(bgr, return_word_box=o.words)[0]
        except (RuntimeError, ValueError, IndexError) as exc:
            raise EngineError(f"paddleocr failed: {type(exc).__name__}: {exc}") from None
        lines = []
        words_of = result.get("text_word") if o.words else None
        regions_of = result.get("text_word_region") if o.words else None
        for i, (text, score, poly) in enumerate(zip(result["rec_texts"], result["rec_scores"], result["rec_polys"])):
            pts = [(float(x), float(y)) for x, y in np.asarray(poly)]
            box = Box.around(pts)
            vertical = is_vertical(box, text)
            words = []
            if words_of is not None and not vertical and o.script == "latin":
                for token, quad in zip(words_of[i], regions_of[i]):
                    if token.strip():
                        words.append((token.strip(), None, Box.around(np.asarray(quad, dtype=float))))
            lines.append(Line(text.strip(), float(score), box, pts, words, vertical))
        lines = mend_lines(lines, o.lang) if o.mend else lines
        return assemble_in_reading_order(lines, o.rtl, joiner="" if o.script in CJK_SCRIPTS else " ")

    def close(self) -> None:
        self.ocr = None
        self._cache.cleanup()
