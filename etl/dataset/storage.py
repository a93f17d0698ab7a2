"""Storage through fsspec: local paths and s3:// gs:// az:// http(s):// URIs.

Storage options (endpoint, region, anonymous...) come from the environment the
way each fsspec backend reads it (e.g. AWS_* variables and AWS_ENDPOINT_URL_S3
for s3fs), so the client and the workers resolve the same URIs the same way.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from urllib.parse import urlparse
from urllib.request import url2pathname

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from etl.dataset import containers
from etl.dataset.containers import read_limited

# Schemes an image URI may use; "" is a local path.
SUPPORTED_SCHEMES = {"", "file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "http", "https"} | containers.PROTOCOLS


def scheme_of(uri: str) -> str:
    if "://" not in uri:
        return ""
    return uri.split("://", 1)[0].lower()


def url_to_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', keeping the scheme of `base`."""
    if scheme_of(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def local_path(uri: str) -> str | None:
    """The file a local path or file:// URI names; None for any other scheme."""
    scheme = scheme_of(uri)
    if scheme == "":
        return uri
    # file:// URIs are percent-encoded (Path.as_uri() writes non-ASCII and spaces so).
    return url2pathname(urlparse(uri).path) if scheme == "file" else None


def read_bytes(uri: str, max_bytes: int = 0, pdf_dpi: float | None = None) -> bytes | None:
    """The object's bytes; None when it is larger than `max_bytes` (0: no limit), known from its
    size (stat, HEAD / Content-Length) before reading, or from reading no further than the limit.
    A page inside an archive or a PDF (etl.dataset.containers): its image's bytes."""
    if containers.split_uri(uri) is not None:
        return containers.read_member(uri, max_bytes, pdf_dpi)
    if (path := local_path(uri)) is not None:
        # Plain read: works on pipes and special files too (fsspec's opener seeks).
        with open(path, "rb") as f:
            return read_limited(f, max_bytes)
    fs, path = url_to_fs(uri)
    if max_bytes:
        try:
            size = fs.size(path)
        except (NotImplementedError, ValueError, TypeError):
            size = None  # unknown (no Content-Length): read no further than the limit
        if size is not None and size > max_bytes:
            return None
        with fs.open(path, "rb") as f:
            return read_limited(f, max_bytes)
    return fs.cat_file(path)


def write_parquet_atomic(table: pa.Table, uri: str) -> None:
    """Write a Parquet file so that no reader ever sees a partial one.

    Local files are written beside the target under a name no reader globs
    (``*.parquet.tmp-*``) and renamed over it. On object stores one PUT of the
    whole object is already all-or-nothing, so the bytes are built in memory
    and uploaded in one request.
    """
    fs, path = url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    fs.pipe_file(path, buf.getvalue())


def unreadable(fs: fsspec.AbstractFileSystem, path: str) -> str | None:
    """Why the Parquet file at `path` cannot be read (None when its footer is whole).

    A crashed copy, a truncated upload or a bad disk leaves a file without its footer, and one
    such file makes every reader of the whole dataset fail ("No magic bytes")."""
    try:
        pq.read_metadata(path, filesystem=fs)
        return None
    except (OSError, pa.ArrowException) as exc:
        return f"{type(exc).__name__}: {exc}"


def sound_parquet(uri: str) -> tuple[fsspec.AbstractFileSystem, list[str], dict[str, str]]:
    """The shards under `uri` that can be read, and the damaged ones with their reasons."""
    fs, files = glob_parquet(uri)
    damaged = {f: why for f in files if (why := unreadable(fs, f))}
    return fs, [f for f in files if f not in damaged], damaged


def check_writable(uri: str) -> str | None:
    """Why nothing can be written under `uri` (None when a small object can be written and removed):
    a path under a regular file, a read-only or full volume, a bucket without write access."""
    probe = join(uri, f".write-check-{uuid.uuid4().hex}")
    try:
        fs, path = url_to_fs(probe)
        if isinstance(fs, LocalFileSystem):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fs.pipe_file(path, b"comic-ocr-etl write check\n")
        fs.rm_file(path)
        return None
    except Exception as exc:  # OSError (ENOTDIR, EROFS, ENOSPC, EACCES) or the object store's own error
        return f"{type(exc).__name__}: {exc}"


def glob_parquet(uri: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """All Parquet shards under a folder (any depth); temp files never match."""
    fs, path = url_to_fs(uri)
    fs.invalidate_cache()  # object-store listings are cached per process: other workers wrote since
    if not fs.exists(path):
        return fs, []
    return fs, sorted(p for p in fs.glob(path.rstrip("/") + "/**/*.parquet"))
