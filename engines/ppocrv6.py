"""PP-OCRv6 small (detector, recogniser) and the PP-OCR angle classifier on ONNX Runtime, offline.

The three ONNX models ship inside the `rapidocr` wheel (the same wheel that gives Tesseract
its text detector), and they are named by path, so RapidOCR never looks for a download. RapidOCR's
parts are used one by one rather than as its one-call pipeline, for three reasons:
- the detector sees a page at the scale of its lettering: small pages scaled up (shorter side to
  `det_side`), large ones shrunk only to `det_max_side`;
- the lines are cut from the page at full resolution, not from that shrunk copy;
- very tall or very wide images (webtoon strips, wide panels) are detected in overlapping
  windows and the duplicates merged, since one detector pass over a 1:5 strip loses its text.
A line read with a weak score is read again turned the other way up (the angle classifier
often misjudges hand lettering), and the better reading is kept.
Lines come with their polygon, upright box and score, Latin lines with word boxes and scores.
Vertical columns (Japanese, Chinese) are recognised turned upright, kept as vertical lines and
read right to left.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from pathlib import Path

import numpy as np
from PIL import Image

from engines.base import Engine, check_reading, reads_rtl
from engines.lang import KANA_CHAR, WITHOUT_SPACES, is_cjk, iso
from engines.layout import Box, Line, assemble_in_reading_order, is_vertical
from engines.words import load_words, mend_lines, version_note
from engines.contract import ConfigError, EngineError, PageError
from engines.contract import PageResult

log = logging.getLogger(__name__)

MODELS = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx", "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx"}
CJK = WITHOUT_SPACES  # the languages read as vertical pages and joined without spaces


def model_folder() -> Path:
    """The `rapidocr` package's own model folder (where its wheel puts the ONNX files)."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.origin:
        raise ConfigError("engine 'ppocrv6' needs rapidocr and onnxruntime (dependencies of comic-ocr-etl): "
                          "pip install 'rapidocr>=3.10,<4' onnxruntime")
    return Path(spec.origin).parent / "models"


def supported_langs() -> set[str]:
    """Languages the PP-OCRv6 recogniser reads, from rapidocr's own model list."""
    import yaml

    try:
        doc = yaml.safe_load((model_folder().parent / "default_models.yaml").read_text())
        langs = {str(x) for x in doc["onnxruntime"]["PP-OCRv6"]["rec"]["small"][0]["supported_langs"]}
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        langs = {"ch", "en", "japan"}
    return {iso(x) for x in langs}


@dataclass
class PpOcrV6Options:
    # auto: each page's script decides (Japanese or Chinese: vertical columns, joined without spaces; Japanese
    # read right to left); or en, ja, zh, a Latin-script language: one multilingual recogniser reads them all
    lang: str = "auto"
    det_side: int = 736  # the detector sees the page's shorter side scaled up to at least this, px
    det_max_side: int = 2000  # ... and its longer side shrunk to at most this (lines are still cut at full size)
    det_thresh: float = 0.3
    det_box_thresh: float = 0.5
    det_unclip_ratio: float = 1.6
    tile: float = 6.0  # an image longer than `tile` times its width (or wider than tall) is detected in windows; 0: never
    rec_score_thresh: float = 0.5  # drop lines read with a lower score (0-1)
    retry_below: float = 0.9  # a line read with a lower score is read again turned the other way up; 0: never
    cls: bool = True  # the angle classifier turns upside-down lines over
    vertical: bool | None = None  # columns read top to bottom (default: on for ja and zh)
    reading: str = "auto"  # auto (rtl for Japanese) | ltr | rtl: the order of blocks side by side
    words: bool = True  # word boxes and scores (Latin lines)
    mend: bool = True  # split words run together, mend digits read for letters (engines.words)
    gpu: bool = False  # ONNX Runtime's CUDA provider when onnxruntime-gpu is installed; the CPU otherwise
    threads: int = 1  # ONNX Runtime intra-op threads: one process per core is faster than threads

    def __post_init__(self):
        self.lang = iso(self.lang)
        check_reading(self.reading)
        if self.det_side < 32 or self.det_max_side < self.det_side or self.threads < 1:
            raise ValueError("32 <= det_side <= det_max_side and threads >= 1 are required")
        if self.tile and self.tile < 1.5:
            raise ValueError("tile is the aspect ratio past which an image is tiled: 0 (never) or >= 1.5")

    def page_lang(self, texts: list[str]) -> str:
        """The language a page is laid out in: `lang`, or for lang=auto the script of what was read."""
        if self.lang != "auto":
            return self.lang
        chars = "".join(texts)
        cjk = [c for c in chars if is_cjk(c)]
        if len(cjk) <= sum(c.isalnum() for c in chars) - len(cjk):
            return "en"
        return "ja" if any(KANA_CHAR.match(c) for c in cjk) else "zh"

    def is_vertical_page(self, lang: str) -> bool:
        return lang in CJK if self.vertical is None else self.vertical

    def is_rtl(self, lang: str) -> bool:
        return reads_rtl(self.reading, lang == "ja")


class PpOcrV6Engine(Engine):
    name = "ppocrv6"
    Options = PpOcrV6Options
    # Its load (three ONNX Runtime sessions, the first page's warm-up) and seconds per page are
    # measured figures in costs.yaml, as every engine's.
    max_batch_size = 32

    @classmethod
    def preload_modules(cls, options: PpOcrV6Options) -> tuple[str, ...]:
        return (cls.__module__, "rapidocr.main")  # ONNX Runtime starts no thread at import

    @classmethod
    def check(cls, options: PpOcrV6Options) -> None:
        folder = model_folder()
        gone = [name for name in MODELS.values() if not (folder / name).is_file()]
        if gone:
            raise ConfigError(f"engine 'ppocrv6': {', '.join(gone)} missing from {folder}; the rapidocr wheel "
                              "(>= 3.10) ships them: pip install --force-reinstall 'rapidocr>=3.10,<4'. "
                              "Weights are never downloaded at run time.")
        langs = supported_langs() | {"auto"}
        if options.lang not in langs:
            raise ConfigError(f"engine 'ppocrv6': lang={options.lang!r} is not read by the PP-OCRv6 recogniser "
                              f"(it reads: {', '.join(sorted(langs))})")

    def __init__(self, options: PpOcrV6Options):
        super().__init__(options)
        if options.mend:  # the word list loads with the model: part of the batch's cold start
            load_words(options.lang)
        import onnxruntime as ort
        from rapidocr import RapidOCR

        folder = model_folder()
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.cuda = options.gpu and "CUDAExecutionProvider" in ort.get_available_providers()
        if options.gpu and not self.cuda:
            log.warning("ppocrv6: gpu=true but this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); "
                        "running on the CPU")
        params = {
            "Global.log_level": "error",
            "Det.thresh": options.det_thresh,
            "Det.box_thresh": options.det_box_thresh,
            "Det.unclip_ratio": options.det_unclip_ratio,
            "Det.limit_side_len": options.det_side,
            "Det.limit_type": "min",
            "EngineConfig.onnxruntime.intra_op_num_threads": options.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": self.cuda,
            **{f"{part}.model_path": str(folder / name) for part, name in MODELS.items()},
        }
        try:
            self._ocr = RapidOCR(params=params)
            self._det = self._ocr._load_det_model()
            self._rec = self._ocr._load_rec_model()
            self._cls = self._ocr._load_cls_model() if options.cls else None
        except Exception as exc:
            raise ConfigError(f"engine 'ppocrv6': cannot load the models in {folder}: {type(exc).__name__}: {exc}") from None

    def version(self) -> str:
        device = "cuda" if self.cuda else ("cpu (gpu=true: no CUDA provider)" if self.options.gpu else "cpu")
        return (f"PP-OCRv6 small det+rec, PP-OCR cls v2.0 (rapidocr {dist_version('rapidocr')}, "
                f"onnxruntime {dist_version('onnxruntime-gpu' if self.cuda else 'onnxruntime')}"
                f"{version_note(self.options.lang, self.options.mend)}; {device})")

    def read(self, image: Image.Image) -> PageResult:
        from rapidocr.ch_ppocr_rec import TextRecInput
        from rapidocr.utils.process_img import get_rotate_crop_image

        o = self.options
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        try:
            quads = self._detect_tiled(bgr)
            if not quads:
                return PageResult()
            crops = [get_rotate_crop_image(bgr, copy.deepcopy(q)) for q in quads]
            if self._cls is not None:
                cls = self._cls(crops)
                upright = cls.img_list
                turned = ["180" in label and sc > self._cls.cls_thresh for label, sc in cls.cls_res]
            else:
                upright, turned = crops, [False] * len(crops)
            rec = self._rec(TextRecInput(img=upright, return_word_box=o.words and o.lang not in CJK))
            if o.retry_below > 0:
                upright, rec, turned = self._retry_weak(upright, rec, turned)
            kept = [i for i, (t, sc) in enumerate(zip(rec.txts, rec.scores)) if t.strip() and sc >= o.rec_score_thresh]
            lang = o.page_lang([rec.txts[i] for i in kept])
        except PageError:  # the page's deadline firing inside ONNX Runtime's pre-processing
            raise
        except Exception as exc:
            h, w = bgr.shape[:2]
            raise EngineError(f"ppocrv6 failed on a {w}x{h} image: {type(exc).__name__}: {exc}") from None
        # An upside-down crop's first column lies at its outline's third corner.
        as_read = [np.roll(q, 2, axis=0) if t else q for q, t in zip(quads, turned)]
        words_of = self._word_boxes(upright, as_read, rec) if o.words and lang not in CJK else None
        columns = o.is_vertical_page(lang)
        lines = []
        for i in kept:
            text = rec.txts[i].strip()
            pts = [(float(x), float(y)) for x, y in quads[i]]
            box = Box.around(pts)
            vertical = columns and is_vertical(box, text)
            lines.append(Line(text, float(rec.scores[i]), box, pts, words_of[i] if words_of and not vertical else [], vertical))
        lines = mend_lines(lines, lang) if o.mend else lines
        return assemble_in_reading_order(lines, o.is_rtl(lang), joiner="" if lang in CJK else " ")

    def _retry_weak(self, crops: list[np.ndarray], rec, turned: list[bool]):
        """Lines read with a score under `retry_below` (dropped ones too) are read again turned
        the other way up, and each keeps the reading with the better score. On hand lettering
        and low-resolution lines the angle classifier often picks the wrong way up (on the real
        pages of `just eval` this alone recovered most lost words); a confident line is never
        touched. Returns the crops (as read), the merged readings and which crops are upside down."""
        import cv2
        from rapidocr.ch_ppocr_rec import TextRecInput
        from rapidocr.ch_ppocr_rec.typings import TextRecOutput

        weak = [i for i, sc in enumerate(rec.scores) if sc < self.options.retry_below]
        if not weak:
            return crops, rec, turned
        crops, turned, txts, scores = list(crops), list(turned), list(rec.txts), list(rec.scores)
        words = list(rec.word_results) if rec.word_results and len(rec.word_results) == len(txts) else None
        imgs = [cv2.rotate(crops[i], cv2.ROTATE_180) for i in weak]
        again = self._rec(TextRecInput(img=imgs, return_word_box=words is not None))
        for k, i in enumerate(weak):
            if again.scores[k] > scores[i] and again.txts[k].strip():
                crops[i], txts[i], scores[i], turned[i] = imgs[k], again.txts[k], again.scores[k], not turned[i]
                if words is not None:
                    words[i] = again.word_results[k]
        merged = TextRecOutput(imgs=crops, txts=tuple(txts), scores=scores,
                               word_results=tuple(words) if words is not None else rec.word_results)
        return crops, merged, turned

    # -- detection -------------------------------------------------------------------
    def _detect(self, bgr: np.ndarray) -> list[np.ndarray]:
        """Quads in page pixels; the detector scales the shorter side up to det_side itself."""
        import cv2

        h, w = bgr.shape[:2]
        s = min(1.0, self.options.det_max_side / max(h, w))
        img = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s)))) if s < 1 else bgr
        out = self._det(img)
        if out.boxes is None or len(out.boxes) == 0:
            return []
        return [np.asarray(q, dtype=np.float32) / s for q in out.boxes]

    def _detect_tiled(self, bgr: np.ndarray) -> list[np.ndarray]:
        h, w = bgr.shape[:2]
        long, short = max(h, w), min(h, w)
        if not self.options.tile or long <= self.options.tile * short:
            return self._detect(bgr)
        # Square-ish windows along the long side, overlapping by a quarter, so that a line cut
        # by one window's edge lies whole in the next.
        size = min(long, round(short * 1.5))
        step = max(1, round(size * 0.75))
        starts = list(range(0, long - size + 1, step))
        if starts[-1] + size < long:
            starts.append(long - size)
        quads = []
        for start in starts:
            window = bgr[start:start + size] if h > w else bgr[:, start:start + size]
            for q in self._detect(window):
                q = q.copy()
                q[:, 1 if h > w else 0] += start
                quads.append(q)
        return merge_duplicates(quads)

    def _word_boxes(self, crops, quads, rec) -> list[list[tuple[str, float | None, Box]]]:
        """Per line, (word, score, page box) from the recogniser's character positions."""
        try:
            out = self._ocr.cal_rec_boxes(crops, np.asarray(quads), copy.copy(rec), False)
        except Exception:  # word boxes are a bonus: a line without them is still a line
            return [[] for _ in quads]
        words = []
        for line in out.word_results:
            ws = []
            for text, score, pts in line or ():
                if pts is not None and str(text).strip():
                    ws.append((str(text).strip(), float(score), Box.around(pts)))
            words.append(ws)
        return words if len(words) == len(quads) else [[] for _ in quads]

    def close(self) -> None:
        self._ocr = self._det = self._rec = self._cls = None


def merge_duplicates(quads: list[np.ndarray], inside: float = 0.6) -> list[np.ndarray]:
    """Quads from overlapping windows, each line once: of two boxes where most of one lies inside
    the other, the larger stays (a line cut by a window's edge is found whole in the next window)."""
    if not quads:
        return []
    boxes = np.array([[q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()] for q in quads])
    area = np.maximum(1e-6, (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    keep: list[int] = []
    for i in np.argsort(-area):
        x0, y0, x1, y1 = boxes[i]
        dup = False
        for j in keep:
            ix = max(0.0, min(x1, boxes[j, 2]) - max(x0, boxes[j, 0]))
            iy = max(0.0, min(y1, boxes[j, 3]) - max(y0, boxes[j, 1]))
            if ix * iy > inside * area[i]:
                dup = True
                break
        if not dup:
            keep.append(int(i))
    return [quads[i] for i in sorted(keep, key=lambda i: (boxes[i, 1], boxes[i, 0]))]
