"""Typed errors. A page error carries a short `kind` (stored in `error_kind`) and
whether it is transient (a rerun may succeed) or terminal (the input is bad).

Errors raised before any work starts (bad manifest, bad options, missing
language data) are `UsageError`s: the CLI exits with code 2 on them.
"""

from __future__ import annotations


class UsageError(Exception):
    """Unusable input or configuration, found before any page is processed."""


class ManifestError(UsageError):
    """The manifest cannot be used; the message names file, column and rows."""


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
