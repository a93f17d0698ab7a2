"""Typed errors: the engine contract's (engines.contract, re-exported here for the pipeline) and
the pipeline's own. Errors raised before any work starts are `UsageError`s (exit code 2).
"""

from __future__ import annotations

from engines.contract import (  # noqa: F401
    ConfigError,
    EngineError,
    InputError,
    PageError,
    PageTimeout,
    TransientError,
    UsageError,
)


class ManifestError(UsageError):
    """The manifest cannot be used; the message names file, column and rows."""
