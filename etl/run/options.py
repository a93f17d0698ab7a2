"""A run's options: one typed definition, parsed and validated once, that the CLI (`just ocr`),
`run_ocr` and `run_cascade` share; `just ocr help` prints it with every engine's options.

Every other `key=value` of a run is an engine option (its Options dataclass checks it).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from engines.args import parse_bool
from engines.base import DEFAULT_ENGINE
from etl.errors import ConfigError

DEFAULT_PAGE_TIMEOUT = 300.0


def _flag(value: Any) -> Any:
    return None if value is None or value == "" else parse_bool(value)


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip() == "" else value


Flag = Annotated[bool, BeforeValidator(_flag)]


class RunOptions(BaseModel):
    """How a run reads its pages (what to read, where the dataset goes, how the work is cut and
    bounded). Field descriptions are the help `just ocr help` prints."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    src: str | None = Field(None, description="what you keep comics in: page images, a CBZ/CBR/CB7/CBT archive, "
                            "a PDF, an EPUB, or a folder or s3:// prefix of them (series folders of volumes)")
    manifest: str | None = Field(None, description="a manifest (CSV, Parquet, JSONL: page_id, image_uri)")
    from_: str | None = Field(None, alias="from", description="read the pages of this dataset (chosen by where=)")
    where: str | None = Field(None, description="SQL over the pages view of from=: which pages to read")
    engine: str = Field(DEFAULT_ENGINE, description="the method (just engines lists them)")
    out: str | None = Field(None, description="the dataset: a folder or s3:// prefix (default: out, or from=)")
    batch: int | None = Field(None, ge=1, description="pages a call reads (default: planned from costs.yaml)")
    workers: int | None = Field(None, ge=1, description="calls at once (default: the cores here, lithops.yaml's "
                                "max_workers on a cloud backend)")
    backend: str | None = Field(None, description="a Lithops backend of lithops.yaml (default: localhost)")
    config: str | None = Field(None, description="a Lithops config file (default: lithops.yaml, if present)")
    limit: int | None = Field(None, ge=1, description="read only the first N pages")
    force: Flag = Field(False, description="read again pages already read with these options")
    retries: int = Field(2, ge=0, description="times a failed call runs again")
    page_timeout: float = Field(DEFAULT_PAGE_TIMEOUT, gt=0, description="seconds a page may take")
    call_timeout: float | None = Field(None, gt=0, description="seconds a call may take (default: its pages' "
                                       "time limits plus 300)")
    max_pixels: int | None = Field(None, ge=1, description="largest image read, in pixels (default: 100 MP)")
    max_bytes: int | None = Field(None, ge=1, description="largest image file read, in bytes")
    pdf_dpi: float | None = Field(None, ge=36, le=1200, description="resolution a PDF page that is not one image is "
                                  "rendered at (default: its images' own, 150-400; 200 for vector pages)")
    checkpoint: int | None = Field(None, ge=1, description="pages a worker reads between two writes of its shards")
    max_cost_usd: float | None = Field(None, ge=0, description="cap on an API engine's spend; pages past it are "
                                       "left pending for a rerun")
    cascade: str | None = Field(None, description="A,B[,C]: A reads every page, each later engine the doubtful "
                                "lines (or pages) only")
    when: str | None = Field(None, description="a cascade's doubtful lines: SQL over best_lines (default: under the "
                             "first engine's calibrated confidence, or doubtful_text(text, lang))")
    pages_when: str | None = Field(None, description="a cascade's doubtful pages, read whole: SQL over best_text "
                                   "(default with lang=ja: coalesce(mean_confidence, 0) under the threshold)")
    progress: Flag | None = Field(None, description="a live progress bar (default: on a terminal)")
    show: int | None = Field(None, ge=0, description="pages whose text is printed at the end (0: none; default 5)")

    @classmethod
    def keys(cls) -> set[str]:
        """The names a command line or a keyword call may use for run options."""
        return {f.alias or name for name, f in cls.model_fields.items()} | set(cls.model_fields)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> "RunOptions":
        """Typed and checked options from strings (the CLI) or values (Python); ConfigError when bad."""
        values = {("from_" if k == "from" else k): _blank_is_none(v) for k, v in raw.items()}
        values = {k: v for k, v in values.items() if v is not None}
        try:
            return cls.model_validate(values, by_name=True)
        except ValidationError as exc:
            raise ConfigError(_readable(exc)) from None

    @classmethod
    def split(cls, raw: dict[str, Any]) -> tuple["RunOptions", dict[str, Any]]:
        """(the run options, the rest: engine options) of a run's key=value pairs or keywords."""
        keys = cls.keys()
        run = {k: v for k, v in raw.items() if k in keys}
        return cls.parse(run), {k: v for k, v in raw.items() if k not in keys}

    def given(self, *exclude: str) -> dict[str, Any]:
        """The options set (not defaults), by field name, less `exclude`."""
        return {k: getattr(self, k) for k in self.model_fields_set if k not in exclude}


def _readable(exc: ValidationError) -> str:
    """`batch=0: must be >= 1` lines instead of pydantic's report."""
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "options"
        key = "from" if key == "from_" else key
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "not a run option"
        elif err["type"].startswith(("greater_than", "less_than")):
            msg = "must be " + msg.removeprefix("Input should be ").replace("greater than or equal to", ">=") \
                .replace("greater than", ">").replace("less than or equal to", "<=").replace("less than", "<")
        elif err["type"] == "value_error":
            msg = str(err.get("ctx", {}).get("error", msg))
        given = err.get("input")
        out.append(f"{key}={given!r}: {msg}" if given is not None and not isinstance(given, dict) else f"{key}: {msg}")
    return "; ".join(out)
