"""Image decoding: each bad file gets a specific reason; valid oddities are read."""

import io

import pytest
from PIL import Image

from etl.errors import InputError
from etl.run.images import decode


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data, kind, words",
    [
        (b"", "empty_file", "0 bytes"),
        (b"hello, this is text\n", "not_an_image", "text"),
        (b"\x00\x01\x02\x03garbage", "not_an_image", "unknown format"),
        (encoded(Image.new("RGB", (300, 300), "red"), "PNG")[:200], "corrupt_image", "PNG"),
        (encoded(Image.effect_noise((300, 300), 50).convert("RGB"), "JPEG")[:600], "corrupt_image", "JPEG"),
    ],
)
def test_bad_bytes_give_specific_reasons(data, kind, words):
    with pytest.raises(InputError) as err:
        decode(data)
    assert err.value.kind == kind
    assert words in str(err.value)


def test_pixel_limit_guards_against_decompression_bombs():
    data = encoded(Image.new("L", (4000, 3000), 255), "PNG")
    with pytest.raises(InputError) as err:
        decode(data, max_pixels=1_000_000)
    assert err.value.kind == "too_large" and "12,000,000" in str(err.value)
    assert decode(data, max_pixels=20_000_000).size == (4000, 3000)


@pytest.mark.parametrize(
    "img, fmt, kw",
    [
        (Image.new("CMYK", (40, 30), (0, 0, 0, 0)), "JPEG", {}),
        (Image.new("I;16", (40, 30), 65535), "PNG", {}),
        (Image.new("P", (40, 30), 0), "PNG", {"transparency": 0}),
        (Image.new("RGBA", (40, 30), (0, 0, 0, 0)), "WEBP", {"lossless": True}),
        (Image.new("1", (40, 30), 1), "TIFF", {}),
    ],
)
def test_valid_oddities_decode_to_white_paper(img, fmt, kw):
    out = decode(encoded(img, fmt, **kw))
    assert out.mode in ("RGB", "L") and out.size == (40, 30)
    assert out.convert("L").getextrema()[0] >= 250  # transparent/blank areas read as white paper


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("L", (20, 20), v) for v in (255, 0)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert decode(buf.getvalue()).convert("L").getpixel((5, 5)) == 255
