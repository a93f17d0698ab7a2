"""The one reading of arguments: every command's `key=value` words, every boolean, every option
value typed from its annotation, and the help of each option (the comment beside its field).

The engines' Options dataclasses, the run options (etl.run.options), the CLI, `just models`,
`just eval` and `just bench` all read their arguments here, so `force=yes` means the same
everywhere and a word that is no boolean is an error everywhere.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
import typing
from typing import Any

from engines.contract import ConfigError

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_kv(args: list[str]) -> dict[str, str]:
    """`key=value` arguments (every command's, and engine specs' options) -> a dict. Keys lose
    leading dashes and have "-" read as "_"; a value may hold "=". ConfigError for anything else."""
    kv = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {arg!r}")
        kv[key] = value
    return kv


def parse_bool(value: Any) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case) or a bool; ValueError for any other word."""
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (true or false)")


def convert(value: Any, hint: Any) -> Any:
    """A string from the command line as the annotated type (`int | None` -> int); other values as given."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args else hint
    if not isinstance(value, str) or target is str:
        return value
    if target is bool:
        return parse_bool(value)
    return target(value)


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
            values[key] = convert(value, hints[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: option {key}={value!r} is not a valid {hints[key]}") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class OptionHelp:
    name: str
    type: str
    default: Any
    help: str


def option_help(cls: type) -> list[OptionHelp]:
    """Each field of an Options dataclass with its type, default and help: the comment on its line,
    or the comment lines just above it (the dataclass is the one definition; nothing is repeated)."""
    comments: dict[int, str] = {}
    try:
        lines, first = inspect.getsourcelines(cls)
        for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0] + first - 1] = tok.string.lstrip("#").strip()
    except (OSError, TypeError, tokenize.TokenError):
        lines, first = [], 0
    where = {}
    for i, line in enumerate(lines):
        name = line.strip().split(":", 1)[0]
        if name.isidentifier() and ":" in line and not line.lstrip().startswith(("#", "def ", "class ", "@")):
            where.setdefault(name, i + first)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        n = where.get(f.name)
        text = comments.get(n, "") if n else ""
        above, k = [], (n or 0) - 1
        while n and k in comments and lines[k - first].lstrip().startswith("#"):
            above.insert(0, comments[k])
            k -= 1
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
        out.append(OptionHelp(f.name, kind, default, " ".join(above + [text]).strip()))
    return out
