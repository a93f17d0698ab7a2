"""Decode page images safely: every failure becomes a specific, readable reason."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from etl.errors import InputError

DEFAULT_MAX_PIXELS = 100_000_000  # decompression-bomb guard (100 MP); configurable

# Our own limit (checked on the header, before any pixel is decoded) replaces
# Pillow's global one, so the limit is the user's and the message is ours.
Image.MAX_IMAGE_PIXELS = None


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Bytes -> an RGB or L image of the first frame, EXIF orientation applied."""
    if not data:
        raise InputError("the file is empty (0 bytes)", kind="empty_file")
    fmt = _sniff(data)
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format or fmt
        w, h = img.size
        if max_pixels and w * h > max_pixels:
            raise InputError(
                f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                "(raise max_pixels= to read it)",
                kind="too_large",
            )
        img.seek(0)  # animated GIF / multi-page TIFF: the first frame is the page
        img.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        if fmt != "unknown format":  # the bytes start as an image of a known format: a damaged one
            raise InputError(f"cannot decode {fmt} image (truncated or corrupt): its header cannot be read",
                             kind="corrupt_image") from None
        head = data[:16]
        what = "text, not an image" if _looks_like_text(head) else f"unknown format (starts {head[:8]!r})"
        raise InputError(f"not an image: {what}", kind="not_an_image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot decode {fmt} image (truncated or corrupt): {exc}", kind="corrupt_image") from None
    img = ImageOps.exif_transpose(img)
    if img.mode not in ("RGB", "L"):
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = _on_white(img)
        elif img.mode.startswith("I;16") or img.mode in ("I", "F"):
            img = ImageOps.autocontrast(img.convert("I").point(lambda v: v / 256).convert("L"))
        elif img.mode == "1":  # a bilevel scan: grey holds it exactly, in a third of RGB's bytes
            img = img.convert("L")
        else:  # CMYK, P, YCbCr...
            img = img.convert("RGB")
    return img


BAND_PIXELS = 4_000_000  # pixels composited at a time


def _on_white(img: Image.Image) -> Image.Image:
    """Transparent areas are paper: the image composited on white, a band of rows at a time. Done
    whole (a white RGBA page, the composite, then RGB) a 100 MP RGBA page held four copies of itself,
    2 GB a worker; in bands, the decoded page and the RGB result."""
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    rows = max(1, BAND_PIXELS // max(1, rgba.width))
    for top in range(0, rgba.height, rows):
        box = (0, top, rgba.width, min(rgba.height, top + rows))
        band = rgba.crop(box)
        out.paste(band.convert("RGB"), box[:2], band.getchannel("A"))
    return out


MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP"}


def _sniff(data: bytes) -> str:
    """The format the bytes claim to be, for messages when decoding stops early."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in MAGIC.items() if data.startswith(magic)), "unknown format")


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)
