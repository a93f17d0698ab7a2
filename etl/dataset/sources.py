"""What people keep comics in, as a manifest: `src=` a folder or prefix of page images, a volume
archive (CBZ/ZIP, CBR/RAR, CB7/7Z, CBT/TAR), a PDF, an EPUB, or a folder of series folders holding
any mix of these.

Each page is one row: `page_id` (stable across runs: an image's path relative to `src` without its
extension, as `just manifest` always made it; in a container `<container path>/<member>`),
`image_uri` (etl.dataset.containers addresses a page inside its container), and `series`, `volume`,
`title` (from ComicInfo.xml where the container has one), `page_no` (1-based, the container's
reading order: natural order, "p2" before "p10"; an EPUB's spine) and `container` (the archive,
PDF or folder). What cannot be a page (a container that cannot be listed, an empty one, an
encrypted or unsafe member, an archive inside an archive) is a `Problem`: the run writes it as an
error row with its reason, so nothing is lost without a word.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

import polars as pl

from etl.dataset import containers, storage
from etl.dataset.schema import ID, URI
from etl.errors import InputError, ManifestError

COLUMNS = (ID, URI, "series", "volume", "title", "page_no", "container")


@dataclass
class Problem:
    row: dict  # the page's manifest row (as far as it is known)
    kind: str  # error_kind
    error: str


@dataclass
class Scan:
    pages: pl.DataFrame  # COLUMNS, in reading order: series, volume, page
    problems: list[Problem]

    @property
    def volumes(self) -> int:
        return self.pages["container"].n_unique() if self.pages.height else 0


def scan(src: str) -> Scan:
    """The pages of `src` (see the module's docstring). ManifestError when `src` is not there or
    holds no page and no container."""
    fs, root = storage.url_to_fs(src)
    scheme = storage.scheme_of(src)
    root = root.rstrip("/") or "/"

    def uri(path: str) -> str:
        return f"{scheme}://{path}" if scheme else os.path.abspath(path)

    if fs.isfile(root):
        base, files = posixpath.dirname(root), [root]
    elif fs.isdir(root):
        base, files = root, fs.find(root)
    else:
        raise ManifestError(f"src={src}: no such file, folder or prefix")
    files = sorted(files, key=lambda p: containers.natural_key(p[len(base):]))
    rows: list[dict] = []
    problems: list[Problem] = []
    loose: dict[str, int] = {}  # a folder of page images -> pages numbered so far
    for path in files:
        rel = path[len(base):].lstrip("/")
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        folder = posixpath.dirname(rel)
        series = posixpath.basename(posixpath.dirname(folder)) or posixpath.basename(folder) or posixpath.basename(base)
        kind = containers.kind_of(path)
        if kind is not None:
            _container(kind, uri(path), rel, posixpath.basename(folder) or posixpath.basename(base), rows, problems)
        elif posixpath.splitext(path.lower())[1] in containers.IMAGE_EXTENSIONS:
            loose[folder] = loose.get(folder, 0) + 1
            rows.append({ID: posixpath.splitext(rel)[0], URI: uri(path), "series": series,
                         "volume": posixpath.basename(folder) or posixpath.basename(base), "title": None,
                         "page_no": loose[folder], "container": uri(posixpath.dirname(path))})
    if not rows and not problems:
        raise ManifestError(f"src={src}: no page images ({', '.join(sorted(containers.IMAGE_EXTENSIONS))}) "
                            f"and no comic files ({', '.join(sorted(containers.KINDS))}) found")
    schema = {ID: pl.String, URI: pl.String, "series": pl.String, "volume": pl.String, "title": pl.String,
              "page_no": pl.Int32, "container": pl.String}
    return Scan(pl.DataFrame(rows, schema=schema), problems)


def _container(kind: str, container: str, rel: str, series: str, rows: list[dict], problems: list[Problem]) -> None:
    name = posixpath.basename(rel)
    volume = name[:-len(".tar.gz")] if name.lower().endswith(".tar.gz") else posixpath.splitext(name)[0]
    base_row = {"series": series, "volume": volume, "title": None, "container": container}
    try:
        members = containers.list_members(kind, container)
        info = containers.comic_info(kind, container)
    except InputError as exc:
        problems.append(Problem({ID: rel, URI: container, **base_row, "page_no": None}, exc.kind, str(exc)))
        return
    base_row.update(info)
    if not members:
        problems.append(Problem({ID: rel, URI: container, **base_row, "page_no": None}, "empty_container",
                                f"{container}: no pages in it (no image members{', no pages' if kind == 'pdf' else ''})"))
        return
    for n, member in enumerate(members, 1):
        row = {ID: f"{rel}/{member.name}", URI: containers.member_uri(kind, member.name, container), **base_row,
               "page_no": n}
        if member.problem:
            problems.append(Problem(row, *member.problem))
        else:
            rows.append(row)
