"""The engine contract, its option parsing and the lazy registry.

An engine is an adapter with typed options (a dataclass), a version string and
a `read(image) -> PageResult`. The worker creates one engine per batch (model
load paid once) and calls `read` for each page; `close` frees the models.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from PIL import Image

from etl.errors import ConfigError
from etl.schema import PageResult

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
    # Seconds to create the engine in a fresh process (imports included) and seconds per
    # page, one core, measured here (BENCHMARKS.md). They size batches
    # (etl.plan.choose_batch_size): a rough figure will do.
    load_seconds: ClassVar[float] = 1.0
    page_seconds: ClassVar[float] = 2.0

    def __init__(self, options: Any):
        self.options = options

    @classmethod
    def parse_options(cls, raw: dict[str, Any]) -> Any:
        """Strings (from the CLI) or values -> the engine's Options; ConfigError if bad."""
        return parse_dataclass(cls.Options, raw, what=f"engine {cls.name!r}")

    @classmethod
    def check(cls, options: Any) -> None:
        """Up-front check of what the engine needs (binaries, language data).

        Run once on the client before any work, so a missing language is one clear
        error instead of a dataset full of failed pages. Raise ConfigError.
        """

    @classmethod
    def cost_hint(cls, options: Any, preloaded: bool = False) -> tuple[float, float]:
        """(load seconds, seconds per page) for these options; a page's share when pages overlap.

        `preloaded`: the call runs where `preload_modules` are already imported (a localhost
        runner), so their import time is not part of the load.
        """
        return cls.load_seconds, cls.page_seconds

    @classmethod
    def preload_modules(cls, options: Any) -> tuple[str, ...]:
        """Modules a local runner may import once, before it forks the calls.

        Each localhost call is a fresh fork: what the runner has imported, every call
        inherits for free. Name only modules that start no threads and load no models
        at import (never PyTorch or Paddle): the adapter's own module by default.
        """
        return (cls.__module__,)

    @abstractmethod
    def version(self) -> str:
        """Engine and model versions, stored in every page row."""

    @abstractmethod
    def read(self, image: Image.Image) -> PageResult:
        """Recognise one page. Raise etl.errors.PageError subclasses on failure."""

    def close(self) -> None:
        """Free models and resources at the end of a batch."""


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


def parse_dataclass(cls: type, raw: dict[str, Any], what: str) -> Any:
    """Build dataclass `cls` from raw values, converting strings by field type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{what}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if value is None:
            continue
        try:
            values[key] = _convert(value, hints[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: option {key}={value!r} is not a valid {hints[key]}") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _convert(value: Any, hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args else hint
    if not isinstance(value, str) or target is str:
        return value
    if target is bool:
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    return target(value)
