"""Pages inside the files people keep comics in: CBZ/ZIP, CBT/TAR, CB7/7Z, CBR/RAR, PDF and EPUB.

A page inside a container is addressed by a URI, never unpacked to disk:

    zip://<member>::<container URI>     CBZ, ZIP and EPUB (an EPUB is a zip)
    tar://<member>::<container URI>     CBT, TAR (and .tar.gz, .tgz)
    7z://<member>::<container URI>      CB7, 7Z (py7zr)
    rar://<member>::<container URI>     CBR, RAR (rarfile; compressed members need bsdtar or unrar)
    pdf://<page number>::<container URI>   a PDF page, 1-based (pypdfium2)

The container URI is any URI storage reads (a local path, s3://, gs://, az://, http(s)://): it is
opened as a file with ranged reads, so one page of a 500 MB CBZ on S3 costs the archive's index and
that member, not the archive. A process keeps the last few containers it opened open
(`OPEN_CONTAINERS`): a worker reading a batch of one volume's pages opens its archive once.

`list_members` (client side) lists a container's pages in reading order; `read_member` (worker side)
returns one page's bytes. Both raise `InputError` with a kind a page row can carry.
"""

from __future__ import annotations

import io
import posixpath
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from etl.errors import InputError

# Container kinds by file extension (lower case).
KINDS = {".cbz": "zip", ".zip": "zip", ".epub": "zip", ".cbt": "tar", ".tar": "tar", ".tgz": "tar",
         ".tar.gz": "tar", ".cb7": "7z", ".7z": "7z", ".cbr": "rar", ".rar": "rar", ".pdf": "pdf"}
PROTOCOLS = {"zip", "tar", "7z", "rar", "pdf"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".gif", ".bmp", ".jp2"}
# A PDF page that is not one embedded image is rendered at the resolution of the images on it (none
# lost, none invented), between PDF_DPI_RANGE; a page of vector art and text alone at PDF_DPI: 200
# dpi makes a comic-book page (6.6 x 10.2 in) about 1320 x 2040 px, the size of a good scan.
PDF_DPI = 200
PDF_DPI_RANGE = (150, 400)
OPEN_CONTAINERS = 4


def kind_of(path: str) -> str | None:
    """The container kind a file name says (None: not a container)."""
    name = path.lower()
    if name.endswith(".tar.gz"):
        return "tar"
    return KINDS.get(posixpath.splitext(name)[1])


def member_uri(kind: str, member: str, container: str) -> str:
    return f"{kind}://{member}::{container}"


def split_uri(uri: str) -> tuple[str, str, str] | None:
    """(kind, member, container URI) of a page inside a container; None for any other URI."""
    head, sep, container = uri.partition("::")
    if not sep:
        return None
    kind, sep, member = head.partition("://")
    if not sep or kind not in PROTOCOLS:
        return None
    return kind, member, container


@dataclass
class Member:
    name: str  # the member's path inside the container ("3" for a PDF's third page)
    size: int | None  # bytes when uncompressed, as the container declares it
    problem: tuple[str, str] | None = None  # (error kind, reason) when the member cannot be a page


def natural_key(name: str):
    """Order people expect: "p2" before "p10" (natsort's, case-insensitive)."""
    from natsort import natsort_keygen, ns

    global _natural
    if _natural is None:
        _natural = natsort_keygen(alg=ns.IGNORECASE | ns.PATH)
    return _natural(name)


_natural = None


# -- opening containers ---------------------------------------------------------------------------

class _Open:
    """One opened container: its file, and the library's archive object."""

    def __init__(self, kind: str, container: str):
        import fsspec
        import fsspec.implementations.local

        self.kind, self.container = kind, container
        # Object storage: ranged reads of 1 MiB ahead (s3fs reads 50 MB ahead by default: a page
        # of a large archive would cost that much).
        fs, path = fsspec.core.url_to_fs(container)
        local = isinstance(fs, fsspec.implementations.local.LocalFileSystem)
        self.file = fs.open(path, "rb", **({} if local else {"block_size": 1 << 20, "cache_type": "readahead"}))
        self.lock = threading.Lock()  # archive readers seek one shared file
        try:
            self.archive = _archive(kind, self.file)
        except Exception:
            self.file.close()
            raise

    def close(self) -> None:
        try:
            if hasattr(self.archive, "close"):
                self.archive.close()
        finally:
            self.file.close()


def _archive(kind: str, f):
    if kind == "zip":
        import zipfile

        return zipfile.ZipFile(f)
    if kind == "tar":
        import tarfile

        return tarfile.open(fileobj=f, mode="r:*")
    if kind == "7z":
        import py7zr

        return py7zr.SevenZipFile(f, mode="r")
    if kind == "rar":
        import rarfile

        return rarfile.RarFile(f)
    import pypdfium2

    return pypdfium2.PdfDocument(f)


_cache: OrderedDict[tuple[str, str], _Open] = OrderedDict()
_cache_lock = threading.Lock()


def opened(kind: str, container: str) -> _Open:
    """The container, opened once and kept among the last OPEN_CONTAINERS this process used."""
    key = (kind, container)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        handle = _Open(kind, container)
    except FileNotFoundError:
        raise InputError(f"container not found: {container}", kind="missing_file") from None
    except InputError:
        raise
    except Exception as exc:
        raise _unreadable(kind, container, exc) from None
    with _cache_lock:
        _cache[key] = handle
        while len(_cache) > OPEN_CONTAINERS:
            _cache.popitem(last=False)[1].close()
    return handle


def _unreadable(kind: str, container: str, exc: BaseException) -> InputError:
    text = f"{type(exc).__name__}: {exc}"
    if "encrypt" in text.lower() or "password" in text.lower():
        return InputError(f"{container}: the {kind} archive is encrypted ({text}); decrypt it first",
                          kind="encrypted")
    return InputError(f"{container}: cannot read the {kind} {'file' if kind == 'pdf' else 'archive'} "
                      f"(truncated or corrupt): {text}", kind="corrupt_archive")


# -- listing (client) ----------------------------------------------------------------------------

def list_members(kind: str, container: str) -> list[Member]:
    """The container's pages in reading order: image members in natural order (an EPUB's in its
    spine order), a PDF's pages by number. Members that cannot be pages but look like them
    (encrypted, unsafe names, nested archives) come with their problem; other files are left out."""
    handle = opened(kind, container)
    with handle.lock:
        try:
            if kind == "pdf":
                return [Member(str(i + 1), None) for i in range(len(handle.archive))]
            entries = _entries(kind, handle)
            if kind == "zip" and container.lower().endswith(".epub"):
                return _epub_pages(handle, entries)
        except InputError:
            raise
        except Exception as exc:
            raise _unreadable(kind, container, exc) from None
    pages = []
    for name, size, encrypted in entries:
        ext = posixpath.splitext(name.lower())[1]
        base = posixpath.basename(name)
        if base.startswith(".") or "__MACOSX" in name.split("/"):
            continue  # macOS resource forks, hidden files
        if kind_of(name) is not None:
            pages.append(Member(name, size, ("nested_archive", f"{name} is an archive inside {container}: "
                                             "unpack it, or list it on its own")))
        elif ext not in IMAGE_EXTENSIONS:
            continue  # ComicInfo.xml, thumbs.db, text files: not pages
        elif encrypted:
            pages.append(Member(name, size, ("encrypted", f"{name} in {container} is encrypted: decrypt the archive first")))
        elif name.startswith("/") or ".." in name.split("/") or "::" in name or re.match(r"^[A-Za-z]:", name):
            pages.append(Member(name, size, ("unsafe_member", f"member name {name!r} in {container} is an absolute "
                                             "path or climbs out of the archive: not read")))
        else:
            pages.append(Member(name, size))
    return sorted(pages, key=lambda m: natural_key(m.name))


def _entries(kind: str, handle: _Open) -> list[tuple[str, int | None, bool]]:
    """(name, uncompressed size, encrypted) of every file member."""
    a = handle.archive
    if kind == "zip":
        return [(i.filename, i.file_size, bool(i.flag_bits & 0x1)) for i in a.infolist() if not i.is_dir()]
    if kind == "tar":
        return [(m.name, m.size, False) for m in a.getmembers() if m.isfile()]
    if kind == "7z":
        if a.needs_password():
            raise InputError(f"{handle.container}: the 7z archive is encrypted; decrypt it first", kind="encrypted")
        return [(i.filename, i.uncompressed, False) for i in a.list() if not i.is_directory]
    return [(i.filename, i.file_size, bool(i.needs_password())) for i in a.infolist() if not i.is_dir()]


def comic_info(kind: str, container: str) -> dict[str, str]:
    """Series, volume and title from the container's ComicInfo.xml (the ComicRack metadata comic
    servers read), where it has one; {} otherwise or when it cannot be read."""
    if kind == "pdf":
        return {}
    import xml.etree.ElementTree as ET

    try:
        handle = opened(kind, container)
        with handle.lock:
            names = [n for n, _, _ in _entries(kind, handle) if posixpath.basename(n).lower() == "comicinfo.xml"]
            if not names:
                return {}
            data = _read(kind, handle, names[0], 1 << 20)
        root = ET.fromstring(data)
    except Exception:  # metadata is a courtesy: a bad ComicInfo.xml never costs a page
        return {}
    found = {key: (root.findtext(tag) or "").strip() for key, tag in (("series", "Series"), ("volume", "Volume"),
                                                                     ("title", "Title"), ("number", "Number"))}
    if not found["volume"] and found["number"]:
        found["volume"] = found["number"]
    return {k: v for k, v in found.items() if v and k != "number"}


def _epub_pages(handle: _Open, entries) -> list[Member]:
    """A fixed-layout EPUB's page images in spine order: each spine item is an image, or an XHTML
    page whose first <img> (or SVG <image>) is the page."""
    import xml.etree.ElementTree as ET

    zf = handle.archive
    sizes = {n: s for n, s, _ in entries}
    container = ET.fromstring(zf.read("META-INF/container.xml"))
    opf_path = next(el.get("full-path") for el in container.iter() if el.tag.endswith("rootfile"))
    opf = ET.fromstring(zf.read(opf_path))
    base = posixpath.dirname(opf_path)
    items = {el.get("id"): el for el in opf.iter() if el.tag.endswith("}item") or el.tag == "item"}
    pages: list[Member] = []
    for ref in (el for el in opf.iter() if el.tag.endswith("itemref")):
        item = items.get(ref.get("idref"))
        if item is None:
            continue
        href = posixpath.normpath(posixpath.join(base, item.get("href", "")))
        if (item.get("media-type") or "").startswith("image/"):
            pages.append(Member(href, sizes.get(href)))
            continue
        try:
            doc = zf.read(href).decode("utf-8", "replace")
        except KeyError:
            continue
        src = re.search(r"""<(?:img|image)\b[^>]*?(?:src|xlink:href|href)\s*=\s*["']([^"']+)["']""", doc)
        if src:
            image = posixpath.normpath(posixpath.join(posixpath.dirname(href), src.group(1)))
            pages.append(Member(image, sizes.get(image)))
    return pages


# -- reading (worker) ----------------------------------------------------------------------------

def read_member(uri: str, max_bytes: int = 0, pdf_dpi: float | None = None) -> bytes | None:
    """The bytes of the page `uri` names; None when it is larger than `max_bytes` (declared, or
    found while reading: a zip bomb stops at the limit). `pdf_dpi`: the resolution a PDF page that
    is not one image is rendered at (None: the resolution of its images, else PDF_DPI)."""
    kind, member, container = split_uri(uri)
    handle = opened(kind, container)
    with handle.lock:
        try:
            return _read(kind, handle, member, max_bytes, pdf_dpi)
        except (InputError, KeyError, FileNotFoundError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"no member {member!r} in {container}", kind="missing_file") from None
        except Exception as exc:
            raise _unreadable(kind, container, exc) from None


def _read(kind: str, handle: _Open, member: str, max_bytes: int, pdf_dpi: float | None = None) -> bytes | None:
    a = handle.archive
    if kind == "pdf":
        return _pdf_page(a, int(member), max_bytes, pdf_dpi)
    if kind == "zip":
        info = a.getinfo(member)
        if max_bytes and info.file_size > max_bytes:
            return None
        with a.open(info) as f:
            return read_limited(f, max_bytes)
    if kind == "tar":
        info = a.getmember(member)
        if max_bytes and info.size > max_bytes:
            return None
        f = a.extractfile(info)
        if f is None:
            raise KeyError(member)
        return read_limited(f, max_bytes)
    if kind == "7z":
        info = next((i for i in a.list() if i.filename == member), None)
        if info is None:
            raise KeyError(member)
        if max_bytes and info.uncompressed > max_bytes:
            return None
        a.reset()
        data = _read_7z(a, member)
        return None if max_bytes and len(data) > max_bytes else data
    info = a.getinfo(member)
    if max_bytes and info.file_size > max_bytes:
        return None
    with a.open(info) as f:
        return read_limited(f, max_bytes)


def _read_7z(archive, member: str) -> bytes:
    import py7zr

    factory = _MemoryFactory()
    try:
        archive.extract(targets=[member], factory=factory)
    except TypeError:  # py7zr before 1.0: read() returns {name: BytesIO}
        return archive.read(targets=[member])[member].read()
    except py7zr.exceptions.PasswordRequired:
        raise InputError(f"{member} is encrypted: decrypt the archive first", kind="encrypted") from None
    written = factory.files[member]
    return written.data if written.closed else written.getvalue()


class _MemoryFactory:
    """py7zr's writer factory, keeping members in memory (never on disk)."""

    def __init__(self):
        self.files: dict[str, _MemoryIO] = {}

    def create(self, filename: str):
        self.files[filename] = _MemoryIO()
        return self.files[filename]


class _MemoryIO(io.BytesIO):
    """A member's bytes; py7zr closes each writer when the member is whole, so they are kept then."""

    data = b""

    def size(self) -> int:
        return len(self.data) if self.closed else len(self.getbuffer())

    def close(self) -> None:
        if not self.closed:
            self.data = self.getvalue()
        super().close()


def read_limited(f, max_bytes: int) -> bytes | None:
    """All of `f` to its end, or None once it passes `max_bytes` (0: no limit). A stream may return
    less than one read asks (fsspec's HTTP stream of a chunked body without Content-Length returns
    a chunk; a zip member inflates piece by piece), so reads go on until one returns nothing."""
    if not max_bytes:
        return f.read()
    parts, size = [], 0
    while chunk := f.read(max_bytes + 1 - size):
        parts.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return None
    return b"".join(parts)


def _pdf_page(pdf, number: int, max_bytes: int, dpi: float | None = None) -> bytes | None:
    """A PDF page as image bytes: its one embedded image as stored (a JPEG as it is, at its own
    resolution), or, for any other page, the page rendered at `dpi` (None: `render_dpi`)."""
    import pypdfium2
    import pypdfium2.raw as raw

    if not 1 <= number <= len(pdf):
        raise InputError(f"no page {number} (the PDF has {len(pdf)})", kind="missing_file")
    page = pdf[number - 1]
    try:
        objects = list(page.get_objects(max_depth=2))
        image = _sole_image(page, objects, raw)
        out = io.BytesIO()
        if image is not None and image.get_filters() == ["DCTDecode"]:
            data = bytes(image.get_data(decode_simple=False))
        elif image is not None:
            image.get_bitmap(render=False).to_pil().save(out, "PNG", compress_level=1)
            data = out.getvalue()
        else:
            scale = (dpi or render_dpi(objects, raw)) / 72
            page.render(scale=scale).to_pil().save(out, "PNG", compress_level=1)
            data = out.getvalue()
    except pypdfium2.PdfiumError as exc:
        raise InputError(f"PDF page {number} cannot be read: {exc}", kind="corrupt_image") from None
    finally:
        page.close()
    return None if max_bytes and len(data) > max_bytes else data


def render_dpi(objects, raw) -> float:
    """The resolution of the finest image on a page (its pixels over its size in inches), within
    PDF_DPI_RANGE; PDF_DPI on a page without images."""
    finest = 0.0
    for obj in objects:
        if obj.type != raw.FPDF_PAGEOBJ_IMAGE:
            continue
        x0, _, x1, _ = obj.get_bounds()
        if x1 - x0 > 1:
            finest = max(finest, obj.get_px_size()[0] / ((x1 - x0) / 72))
    return min(max(finest, PDF_DPI_RANGE[0]), PDF_DPI_RANGE[1]) if finest else PDF_DPI


def _sole_image(page, objects, raw):
    """The page's one image when it covers the page (the usual comic PDF: a scan a page), else None."""
    images = [o for o in objects if o.type == raw.FPDF_PAGEOBJ_IMAGE]
    others = [o for o in objects if o.type in (raw.FPDF_PAGEOBJ_TEXT, raw.FPDF_PAGEOBJ_PATH, raw.FPDF_PAGEOBJ_SHADING)]
    if len(images) != 1 or others:
        return None
    x0, y0, x1, y1 = images[0].get_bounds()
    w, h = page.get_size()
    return images[0] if (x1 - x0) * (y1 - y0) >= 0.9 * w * h else None
