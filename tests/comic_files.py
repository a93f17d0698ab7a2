"""Real comic files built from page images, as people keep them: CBZ, CBT, CB7 (py7zr), CBR (a RAR 4
archive of stored members, written here byte by byte to the format's specification: no free tool
writes RAR), a PDF of embedded-image pages and a vector page (pypdfium2), and a fixed-layout EPUB."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

from PIL import Image


def write_cbz(path: Path, pages: dict[str, bytes], extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in {**pages, **(extra or {})}.items():
            z.writestr(name, data)
    return path


def write_cbt(path: Path, pages: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as t:
        for name, data in pages.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def write_cb7(path: Path, pages: dict[str, bytes]) -> Path:
    import py7zr

    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in pages.items():
            z.writef(io.BytesIO(data), name)
    return path


def write_cbr(path: Path, pages: dict[str, bytes]) -> Path:
    """A RAR 4.x archive whose members are stored (method 0x30), as `rar a -m0` writes one."""
    out = bytearray(b"Rar!\x1a\x07\x00")  # marker block

    def block(kind: int, flags: int, body: bytes, add: bytes = b"") -> bytes:
        size = 7 + len(body)
        head = struct.pack("<BHH", kind, flags, size) + body
        crc = zlib.crc32(head) & 0xFFFF
        return struct.pack("<H", crc) + head + add

    out += block(0x73, 0x0000, b"\x00" * 6)  # archive header (reserved fields)
    for name, data in pages.items():
        encoded = name.encode()
        body = struct.pack("<IIBIIBBHI", len(data), len(data), 3, zlib.crc32(data), 0x5A210000, 20, 0x30,
                           len(encoded), 0x20) + encoded
        out += block(0x74, 0x8000, body, data)  # 0x8000: a data area follows (its size is PACK_SIZE)
    out += block(0x7B, 0x4000, b"")  # end of archive
    path.write_bytes(bytes(out))
    return path


def write_pdf(path: Path, pages: list[bytes], vector_text: str | None = "THE END", caption: str | None = None) -> Path:
    """Each image a page of its own, embedded as JPEG at 150 dpi (a scanned comic's PDF), with
    `caption` as vector text on it when given; then, with `vector_text`, one page of vector text."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    for data in pages:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        jpeg = io.BytesIO()
        img.save(jpeg, "JPEG", quality=92)
        jpeg.seek(0)
        w, h = img.size
        page = pdf.new_page(w * 72 / 150, h * 72 / 150)  # 150 dpi
        obj = pdfium.PdfImage.new(pdf)
        obj.load_jpeg(jpeg, inline=True)
        obj.set_matrix(pdfium.PdfMatrix().scale(w * 72 / 150, h * 72 / 150))
        page.insert_obj(obj)
        if caption:
            _text(pdf, page, caption, 20, 20)
        page.gen_content()
    if vector_text:
        page = pdf.new_page(612, 792)
        _text(pdf, page, vector_text, 150, 400)
        page.gen_content()
    pdf.save(str(path))
    return path


def _text(pdf, page, words: str, x: float, y: float) -> None:
    import pypdfium2.raw as raw

    text = raw.FPDFPageObj_NewTextObj(pdf.raw, b"Helvetica-Bold", 48.0)
    raw.FPDFText_SetText(text, _wide(words))
    raw.FPDFPageObj_Transform(text, 1, 0, 0, 1, x, y)
    raw.FPDFPage_InsertObject(page.raw, text)


def _wide(text: str):
    import ctypes

    data = (text + "\x00").encode("utf-16-le")
    return ctypes.cast(ctypes.create_string_buffer(data, len(data)), ctypes.POINTER(ctypes.c_ushort))


def write_epub(path: Path, pages: dict[str, bytes]) -> Path:
    """A fixed-layout EPUB 3: an XHTML page per image, in spine order (the reverse of the images'
    names, so that order comes from the spine and not from the names)."""
    names = list(pages)
    spine = list(reversed(names))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" '
                   'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile '
                   'full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>')
        items, refs = [], []
        for i, name in enumerate(spine):
            z.writestr(f"OEBPS/images/{name}", pages[name])
            z.writestr(f"OEBPS/page{i}.xhtml", f'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml">'
                       f'<body><img src="images/{name}" alt=""/></body></html>')
            items.append(f'<item id="p{i}" href="page{i}.xhtml" media-type="application/xhtml+xml"/>'
                         f'<item id="i{i}" href="images/{name}" media-type="image/png"/>')
            refs.append(f'<itemref idref="p{i}"/>')
        z.writestr("OEBPS/content.opf", '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
                   'version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
                   '<dc:identifier id="id">test</dc:identifier><dc:title>T</dc:title><dc:language>en</dc:language>'
                   '<meta property="rendition:layout">pre-paginated</meta></metadata>'
                   f'<manifest>{"".join(items)}</manifest><spine>{"".join(refs)}</spine></package>')
    return path
