"""EasyOCR (CRAFT detector + CRNN recogniser, PyTorch), offline.

Weights come from a package (engines/models.py), never from EasyOCR's download;
EasyOCR writes nothing under `~` (its user-network folder is a temporary one).
`canvas_size=1280` (the detector's longest side) read our comic pages as well as
the default 2560 at a fifth of the time and memory. Lines only: EasyOCR gives no
word boxes. PyTorch runs one thread per worker (`threads=`): one worker per core
is faster than threads fighting over the cores.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import warnings
from dataclasses import dataclass
from importlib.metadata import version as dist_version

import numpy as np
from PIL import Image

from engines.base import Engine, check_reading, reads_rtl
from engines.layout import Box, Line, assemble_in_reading_order, is_vertical
from engines.words import load_words, mend_lines, version_note
from engines.models import MODEL_SETS, candidates, locate
from engines.contract import ConfigError, EngineError
from engines.contract import PageResult

log = logging.getLogger(__name__)

CJK = {"ja", "ch_sim", "ch_tra", "ko"}


@dataclass
class EasyOcrOptions:
    lang: str = "en"  # EasyOCR codes, '+'-separated: en, fr, de, ja, ch_sim, ...
    gpu: bool = False  # use CUDA when a device is present; the CPU otherwise (recorded in the version)
    canvas_size: int = 1280  # the detector's longest side, px
    mag_ratio: float = 1.0
    text_threshold: float = 0.7
    low_text: float = 0.4
    link_threshold: float = 0.4
    min_size: int = 10
    decoder: str = "greedy"  # greedy | beamsearch | wordbeamsearch
    model_dir: str | None = None  # a folder with craft_mlt_25k.pth and the recogniser's .pth
    reading: str = "auto"  # auto (rtl for Japanese) | ltr | rtl: the order of blocks side by side
    mend: bool = True  # split words run together, mend digits read for letters (engines.words)
    threads: int = 1

    def __post_init__(self):
        self.lang = "+".join(p.strip() for p in self.lang.replace(",", "+").split("+") if p.strip())
        if not self.lang:
            raise ValueError("lang is empty")
        check_reading(self.reading)
        if self.canvas_size < 256 or self.threads < 1:
            raise ValueError("canvas_size >= 256 and threads >= 1 are required")
        if self.decoder not in ("greedy", "beamsearch", "wordbeamsearch"):
            raise ValueError(f"decoder must be greedy, beamsearch or wordbeamsearch, not {self.decoder!r}")

    @property
    def langs(self) -> list[str]:
        return self.lang.split("+")

    @property
    def rtl(self) -> bool:
        return reads_rtl(self.reading, "ja" in self.langs)


def _config():
    """easyocr/config.py, loaded alone: importing the package would import PyTorch (seconds)."""
    spec = importlib.util.find_spec("easyocr")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("engine 'easyocr' needs packages that are not installed: pip install 'comic-ocr-etl[easyocr]'")
    path = list(spec.submodule_search_locations)[0] + "/config.py"
    cfg_spec = importlib.util.spec_from_file_location("_easyocr_config", path)
    module = importlib.util.module_from_spec(cfg_spec)
    cfg_spec.loader.exec_module(module)
    return module


def recogniser_file(langs: list[str]) -> str:
    """The recognition weights EasyOCR's Reader picks for `langs` (its own rules, generation 2)."""
    cfg = _config()
    known = set(cfg.all_lang_list)
    unknown = sorted(set(langs) - known)
    if unknown:
        raise ConfigError(f"engine 'easyocr': unknown language(s) {', '.join(unknown)}; EasyOCR knows: "
                          f"{', '.join(sorted(known))}")
    gen2 = cfg.recognition_models["gen2"]
    s = set(langs)
    if langs == ["en"]:
        name = "english_g2"
    elif s & {"ch_tra", "th", "ta", "te", "kn"}:
        raise ConfigError(f"engine 'easyocr': {', '.join(sorted(s & {'ch_tra', 'th', 'ta', 'te', 'kn'}))} use "
                          "first-generation models, which this project does not provision")
    elif "ch_sim" in s:
        name = "zh_sim_g2"
    elif "ja" in s:
        name = "japanese_g2"
    elif "ko" in s:
        name = "korean_g2"
    elif s & set(cfg.bengali_lang_list):
        name = "bengali_g2" if "bengali_g2" in gen2 else None
    elif s & set(cfg.arabic_lang_list):
        name = "arabic_g2" if "arabic_g2" in gen2 else None
    elif s & set(cfg.devanagari_lang_list):
        name = "devanagari_g2" if "devanagari_g2" in gen2 else None
    elif s & set(cfg.cyrillic_lang_list):
        name = "cyrillic_g2"
    else:
        name = "latin_g2"
    if not name or name not in gen2:
        raise ConfigError(f"engine 'easyocr': no generation-2 recogniser for {'+'.join(langs)}")
    return gen2[name]["filename"]


class EasyOcrEngine(Engine):
    name = "easyocr"
    Options = EasyOcrOptions
    # Cold start (PyTorch import, a Reader that re-hashes ~98 MB of weights) and seconds per
    # page (the detector at canvas 1280 on one core): costs.yaml.
    max_batch_size = 16  # EasyOCR's memory grows over a run (upstream issue): a fresh process each batch

    @classmethod
    def check(cls, options: EasyOcrOptions) -> None:
        cls.weights(options)
        for module in ("torch", "torchvision", "easyocr"):
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"engine 'easyocr' needs {module}: pip install 'comic-ocr-etl[easyocr]'")

    @classmethod
    def weights(cls, options: EasyOcrOptions):
        """The model folder and the two files this language list needs; ConfigError if absent."""
        detector = MODEL_SETS["easyocr"].files[0].path
        recogniser = recogniser_file(options.langs)
        try:
            folder = locate("easyocr", options.model_dir, needs=(detector, recogniser))
        except ConfigError:
            if recogniser == "english_g2.pth" or options.model_dir:
                raise
            looked = ", ".join(str(f) for _, f in candidates("easyocr")) or "no model folder"
            raise ConfigError(
                f"engine 'easyocr': lang={options.lang} needs {recogniser}, which is not installed (looked in: "
                f"{looked}); the offline package ships English only (craft_mlt_25k.pth, english_g2.pth). Put "
                f"{recogniser} and craft_mlt_25k.pth in a folder and pass model_dir=<folder>: weights are never "
                "downloaded at run time."
            ) from None
        return folder, detector, recogniser

    def __init__(self, options: EasyOcrOptions):
        super().__init__(options)
        if options.mend:  # the word list loads with the model: part of the batch's cold start
            load_words(options.lang)
        folder, _, self._recogniser = self.weights(options)
        import torch

        torch.set_num_threads(options.threads)
        self.device = "cuda" if options.gpu and torch.cuda.is_available() else "cpu"
        self._fallback = options.gpu and self.device == "cpu"
        if self._fallback:
            log.warning("easyocr: gpu=true but no CUDA device is visible; running on the CPU")
        import easyocr

        self._network_dir = tempfile.TemporaryDirectory(prefix="easyocr-")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch deprecation chatter from EasyOCR's model code
            self.reader = easyocr.Reader(
                options.langs, gpu=self.device == "cuda", model_storage_directory=str(folder),
                user_network_directory=self._network_dir.name, download_enabled=False, verbose=False,
            )

    def version(self) -> str:
        device = "cpu (gpu=true: no CUDA device)" if self._fallback else self.device
        mended = version_note(self.options.lang, self.options.mend)
        return f"easyocr {dist_version('easyocr')} (craft_mlt_25k, {self._recogniser.removesuffix('.pth')}{mended}; {device})"

    def read(self, image: Image.Image) -> PageResult:
        o = self.options
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pin_memory without an accelerator
                found = self.reader.readtext(
                    np.asarray(image.convert("RGB")), canvas_size=o.canvas_size, mag_ratio=o.mag_ratio,
                    text_threshold=o.text_threshold, low_text=o.low_text, link_threshold=o.link_threshold,
                    min_size=o.min_size, decoder=o.decoder,
                )
        except (RuntimeError, ValueError, IndexError) as exc:  # torch / cv2 failures on odd inputs
            raise EngineError(f"easyocr failed: {type(exc).__name__}: {exc}") from None
        lines = []
        for quad, text, conf in found:
            pts = [(float(x), float(y)) for x, y in quad]
            box = Box.around(pts)
            lines.append(Line(text.strip(), float(conf), box, pts, vertical=is_vertical(box, text)))
        lines = mend_lines(lines, o.lang) if o.mend else lines
        return assemble_in_reading_order(lines, o.rtl, joiner="" if set(o.langs) & CJK else " ")

    def close(self) -> None:
        self.reader = None
        self._network_dir.cleanup()
