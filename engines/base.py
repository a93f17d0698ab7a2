"""The engine contract, its option parsing (and every command's `key=value` arguments) and the lazy registry.

An engine is an adapter with typed options (a dataclass), a version string and
a `read(image) -> PageResult`. The worker creates one engine per batch (model
load paid once) and calls `read` for each page; `close` frees the models.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from PIL import Image

from engines.args import parse_bool, parse_dataclass
from engines.contract import ConfigError, Element, PageResult

log = logging.getLogger(__name__)

# name -> "module:Class", imported on first use (PyTorch and Paddle only when asked for).
REGISTRY: dict[str, str] = {
    "tesseract": "engines.tesseract:TesseractEngine",
    "easyocr": "engines.easyocr:EasyOcrEngine",
    "paddleocr": "engines.paddleocr:PaddleOcrEngine",
    "ppocrv6": "engines.ppocrv6:PpOcrV6Engine",
    "qwen": "engines.vlm:QwenEngine",
    "gemma": "engines.vlm:GemmaEngine",
    "deepseek": "engines.vlm:DeepSeekEngine",
}
# What `just ocr` and `run_ocr` read with when no engine is named: the method that read real comic
# and manga pages best per CPU-second in `just eval` (README).
DEFAULT_ENGINE = "ppocrv6"
EXTRAS = {"qwen": "vlm", "gemma": "vlm", "deepseek": "vlm"}  # engine -> optional-dependency group


class Engine(ABC):
    """One OCR method. Subclasses set `name`, `Options` and implement `read`."""

    name: ClassVar[str]
    Options: ClassVar[type]
    # The most pages one call holds: bounds a worker's memory (models grow over a batch).
    max_batch_size: ClassVar[int] = 16
    # An API model the engine sends pages to when its options name none (None: a local engine).
    default_model: ClassVar[str | None] = None

    # Options renamed so that a name means the same in every engine: old name -> (new name,
    # old value -> new value). The old name still works and says what to write instead.
    RENAMED: ClassVar[dict[str, tuple[str, Any]]] = {}

    def __init__(self, options: Any):
        self.options = options

    @classmethod
    def parse_options(cls, raw: dict[str, Any]) -> Any:
        """Strings (from the CLI) or values -> the engine's Options; ConfigError if bad."""
        raw = dict(raw)
        for old, (new, convert) in cls.RENAMED.items():
            if old in raw:
                if new in raw:
                    raise ConfigError(f"engine {cls.name!r}: give {new}= alone ({old}= is its old name)")
                raw[new] = convert(raw.pop(old))
                log.warning("engine %r: option %s= is now %s=%s", cls.name, old, new, raw[new])
        return parse_dataclass(cls.Options, raw, what=f"engine {cls.name!r}")

    @classmethod
    def check(cls, options: Any) -> None:
        """Up-front check of what the engine needs (binaries, language data).

        Run once on the client before any work, so a missing language is one clear
        error instead of a dataset full of failed pages. Raise ConfigError.
        """

    @classmethod
    def cost_entry(cls, options: Any) -> str:
        """The costs.yaml `engines:` entry whose measured timings (load, seconds per page, imports)
        hold for these options; the core reads them there (etl.cost.prices), the engine holds none.
        Runs on the client."""
        return cls.name

    @classmethod
    def concurrency(cls, options: Any) -> int:
        """Pages a worker reads at once with these options (API requests in flight); 1 for a local
        model. The worker overlaps that many pages; the planner keeps batches at least that large."""
        return 1

    @classmethod
    def model(cls, options: Any = None) -> str | None:
        """The API model these options send to (the engine's default when `options` is None or names
        none); None for a local engine. The core prices its tokens from costs.yaml `models:`."""
        return cls.default_model

    @classmethod
    def usage_bound(cls, options: Any, width: int, height: int, crop: bool = False) -> tuple[int, int] | None:
        """The most (prompt, completion) tokens one request for an image of width x height (a page,
        or a line's crop when `crop`) can be billed; None for a local engine. A budget reserves
        this before the request is sent, so that spend never passes it whatever the API reports.
        Runs on the client (planning) and the worker (reserving)."""
        return None

    @classmethod
    def preload_modules(cls, options: Any) -> tuple[str, ...]:
        """Modules a local runner may import once, before it forks the calls.

        Each localhost call is a fresh fork: what the runner has imported, every call
        inherits for free. Name only modules that start no threads and load no models
        at import (never PyTorch or Paddle): the adapter's own module by default.
        A named module may define `prepare_to_fork()`: the runner calls it once, after
        the imports (work every call would repeat, done once; it must start no thread).
        """
        return (cls.__module__,)

    @abstractmethod
    def version(self) -> str:
        """Engine and model versions, stored in every page row."""

    @abstractmethod
    def read(self, image: Image.Image) -> PageResult:
        """Recognise one page. Raise etl.errors.PageError subclasses on failure."""

    def read_lines(self, image: Image.Image, lines: list[dict]) -> PageResult:
        """Re-read some lines of a page (a cascade stage; runs on the worker).

        `lines`: {"line_no", "x0", "y0", "x1", "y1"} in page pixels, from an earlier reading.
        Returns one line element per line, in the given box, with `line_no` as its reading
        order. Default: each line's crop (with a margin) read as a page of its own.
        """
        elements, usage = [], {}
        for line in lines:
            result = self.read(line_crop(image, line))
            found = sorted((e for e in result.elements if e.level == "line"), key=lambda e: e.reading_order)
            confs = [e.confidence for e in found if e.confidence is not None]
            elements.append(reread_element(line, " ".join(e.text for e in found) or result.text.strip(),
                                           min(confs) if confs else None))
            for key, value in result.usage.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    usage[key] = usage.get(key, 0) + value
        return PageResult(elements=elements, text="\n".join(e.text for e in elements), usage=usage)

    def close(self) -> None:
        """Free models and resources at the end of a batch."""


CROP_MARGIN = 0.15  # of a line's thickness (its shorter side), around its box


def line_crop(image: Image.Image, line: dict, margin: float = CROP_MARGIN) -> Image.Image:
    """A line's box with a margin of `margin` times its thickness (the shorter side) around it."""
    x0, y0, x1, y1 = (float(line[k]) for k in ("x0", "y0", "x1", "y1"))
    pad = margin * min(x1 - x0, y1 - y0)
    return image.crop((max(0, int(x0 - pad)), max(0, int(y0 - pad)),
                       min(image.width, int(x1 + pad) + 1), min(image.height, int(y1 + pad) + 1)))


def line_crop_size(line: dict, margin: float = CROP_MARGIN) -> tuple[int, int]:
    """The largest `line_crop` of `line` can be (before the page's edges cut it), without the page."""
    w, h = float(line["x1"]) - float(line["x0"]), float(line["y1"]) - float(line["y0"])
    pad = margin * min(w, h)
    return int(w + 2 * pad) + 2, int(h + 2 * pad) + 2


def reread_element(line: dict, text: str, confidence: float | None) -> Element:
    """The element a re-read line becomes: the new text in the earlier reading's box and place."""
    return Element(text=text, level="line", confidence=confidence, x0=line["x0"], y0=line["y0"], x1=line["x1"],
                   y1=line["y1"], polygon=[tuple(p) for p in line["polygon"]] if line.get("polygon") else None,
                   block_id=line.get("block_id"), line_id=line["line_no"], reading_order=line["line_no"],
                   vertical=bool(line.get("vertical")))


def available() -> list[str]:
    return sorted(REGISTRY)


def get_engine(name: str) -> type[Engine]:
    """The engine class for a method name, imported on first use."""
    target = REGISTRY.get(name)
    if target is None:
        raise ConfigError(f"unknown engine {name!r}; available: {', '.join(available())}")
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        extra = EXTRAS.get(name, name)
        raise ConfigError(
            f"engine {name!r} needs packages that are not installed ({exc.name or exc}): "
            f"pip install 'comic-ocr-etl[{extra}]'"
        ) from None


READINGS = ("auto", "ltr", "rtl")  # the order of blocks side by side; auto: right to left for Japanese


def check_reading(reading: str) -> None:
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {', '.join(READINGS)}, not {reading!r}")


def reads_rtl(reading: str, japanese: bool) -> bool:
    return reading == "rtl" or (reading == "auto" and japanese)


def old_rtl_flag(value: Any) -> str:
    """`rtl=true|false` (the old option) as `reading=`: false meant "right to left for Japanese only"."""
    return "rtl" if parse_bool(value) else "auto"


def hashed_as_rtl_flag(options: Any) -> dict[str, Any]:
    """The options as they were hashed while `reading` was an `rtl` flag (its effective value)."""
    view = dataclasses.asdict(options)
    del view["reading"]
    return {**view, "rtl": options.rtl}


# Options added after datasets were made with an engine, and their defaults: at its default such an
# option hashes as before it existed, so a dataset made before resumes without reading its pages
# again (its rows' engine_version says how each was read); any other value hashes apart.
ADDED_OPTIONS = {"mend": True}


def hash_view(options: Any) -> dict[str, Any]:
    """What a config hash is made of: the options, or the view an Options class gives of itself
    (`hash_view()`) so that renamed options hash as their old names did, and datasets made before
    a rename resume without reading their pages again; less `ADDED_OPTIONS` at their defaults."""
    own = getattr(options, "hash_view", None)
    view = own() if own else dataclasses.asdict(options)
    return {k: v for k, v in view.items() if k not in ADDED_OPTIONS or v != ADDED_OPTIONS[k]}
