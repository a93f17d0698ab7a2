"""The engine contract's types: what `Engine.read` returns and the errors it raises.

The pipeline (`etl`) builds on these; nothing here imports it, so an engine can be used, and
tested, without the pipeline. A page error carries a short `kind` (stored in `error_kind`) and
whether it is transient (a rerun may succeed) or terminal (the input is bad). Errors found before
any work starts (bad options, missing language data) are `UsageError`s: the CLI exits with 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Element:
    """One piece of recognised text, in source-image pixels.

    `confidence` is in 0..1, or None where the engine gives none. `polygon` is
    the list of (x, y) points when the engine gives a rotated/curved outline.
    `block_id`/`line_id` tie words to lines and lines to blocks within a page;
    `reading_order` is assigned per level by the engine (0 = first read).
    """

    text: str
    x0: float | None  # None where the engine gives text without a location (plain-text VLMs)
    y0: float | None
    x1: float | None
    y1: float | None
    level: str = "line"
    confidence: float | None = None
    polygon: list[tuple[float, float]] | None = None
    block_id: int | None = None
    line_id: int | None = None
    reading_order: int = 0
    vertical: bool = False  # a column of text read top to bottom (manga, vertical CJK)


@dataclass
class PageResult:
    """What an engine returns for one page."""

    elements: list[Element] = field(default_factory=list)
    text: str = ""
    # API engines: prompt_tokens, completion_tokens, sent_width, sent_height, model
    usage: dict = field(default_factory=dict)


class UsageError(Exception):
    """Unusable input or configuration, found before any page is processed."""


class ConfigError(UsageError):
    """Bad engine options, missing language data or a bad Lithops config."""


class PageError(Exception):
    """One page failed; the run goes on and the page gets an error row."""

    kind = "error"
    transient = False

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        if kind:
            self.kind = kind


class InputError(PageError):
    """The image is missing, unreadable or not an image (terminal)."""

    kind = "bad_image"


class PageTimeout(PageError):
    """The engine took longer than the per-page time limit."""

    kind = "timeout"
    transient = True


class EngineError(PageError):
    """The engine failed on this page."""

    kind = "engine"


class TransientError(PageError):
    """A fault outside the page (storage, network, API): a rerun should succeed."""

    kind = "transient"
    transient = True
