"""OCR engines behind one small contract (`engines.base.Engine`).

The registry maps a method name to "module:Class" and imports lazily, so a
worker only loads the libraries of the engine it runs.
"""

from engines.base import DEFAULT_ENGINE, Engine, available, get_engine

__all__ = ["DEFAULT_ENGINE", "Engine", "available", "get_engine"]
