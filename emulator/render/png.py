"""The stage graph's layout drawn as a PNG for slides: drawn with Pillow, encoded here (fast,
deterministic bytes)."""

from __future__ import annotations

import functools
import math
import struct
import zlib

from PIL import Image, ImageDraw, ImageFont

from emulator.render.layout import FONT_SIZE, LINE_HEIGHT, PAD_X, PAD_Y, SMALL_FONT_SIZE, TITLE_FONT_SIZE, Layout
from emulator.render.svg import _fill

# Pixels per layout unit: 2 gives a sharp picture on a projector.
PNG_SCALE = 1.5
# A picture larger than this (in pixels, either side) is drawn at a smaller scale.
MAX_PNG_SIDE = 12000
# zlib level: 1 is several times faster than the default 6 and the file only a little larger.
PNG_COMPRESS_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def warm_up() -> None:
    """Load the fonts the drawing uses (Pillow decodes its built-in font on first use) and its PNG
    writer, by drawing a throw-away picture in memory."""
    for size in (FONT_SIZE, SMALL_FONT_SIZE, SMALL_FONT_SIZE + 1, TITLE_FONT_SIZE):
        _font(max(4, round(size * PNG_SCALE)))
    image = Image.new("RGB", (40, 20), "#ffffff")
    ImageDraw.Draw(image).text((1, 1), "warm", fill="#000000", font=_font(round(FONT_SIZE * PNG_SCALE)))
    encode_png(image)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(image: Image.Image) -> bytes:
    """``image`` (RGB, 8 bits a channel) as a PNG file: IHDR, one IDAT, IEND; every row unfiltered
    (filter type 0), deflated at :data:`PNG_COMPRESS_LEVEL`.

    Pillow's own encoder tries the five PNG row filters on every row and keeps the one that looks
    smallest: for a drawing that is mostly flat colour that search costs more than it saves
    (a 3CX graph, 2951 x 885 pixels: 74 ms against 30 ms here, 158 KB against 167 KB). The pixels
    are the same whichever filter a row has."""
    if image.mode != "RGB":
        raise ValueError(f"encode_png: an RGB image, not {image.mode}")
    width, height = image.size
    stride = width * 3
    pixels = memoryview(image.tobytes())
    deflate = zlib.compressobj(PNG_COMPRESS_LEVEL)
    compress = deflate.compress
    parts = []
    for row in range(0, height * stride, stride):  # row by row: no copy of the whole picture
        parts.append(compress(b"\x00"))
        parts.append(compress(pixels[row : row + stride]))
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def _rgb(color: str) -> tuple[int, int, int]:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def _arrow(
    draw: ImageDraw.ImageDraw, tip: tuple[float, float], prev: tuple[float, float], color: str, s: float
) -> None:
    angle = math.atan2(tip[1] - prev[1], tip[0] - prev[0])
    size = 8 * s
    left = (tip[0] - size * math.cos(angle - 0.45), tip[1] - size * math.sin(angle - 0.45))
    right = (tip[0] - size * math.cos(angle + 0.45), tip[1] - size * math.sin(angle + 0.45))
    draw.polygon([tip, left, right], fill=color)


def render_png(layout: Layout) -> bytes:
    """The layout as PNG bytes (:func:`draw_png` encoded by :func:`encode_png`)."""
    return encode_png(draw_png(layout))


def draw_png(layout: Layout) -> Image.Image:
    """The layout drawn as a picture (RGB)."""
    scale = min(PNG_SCALE, MAX_PNG_SIDE / max(layout.width, layout.height, 1))
    size = (max(1, int(layout.width * scale)), max(1, int(layout.height * scale)))
    image = Image.new("RGB", size, "#ffffff")
    draw = ImageDraw.Draw(image)

    def p(x: float, y: float) -> tuple[float, float]:
        return (x * scale, y * scale)

    def font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return _font(max(4, round(px * scale)))

    draw.text(p(24, 24), layout.title, fill="#212121", font=font(TITLE_FONT_SIZE))
    draw.text(p(24, 24 + TITLE_FONT_SIZE + 6), layout.subtitle, fill="#616161", font=font(SMALL_FONT_SIZE + 1))
    for item in layout.legend:
        if item.edge:
            draw.line(
                [p(item.x, item.y + 6), p(item.x + 18, item.y + 6)], fill=item.color, width=max(1, int(2 * scale))
            )
            _arrow(draw, p(item.x + 20, item.y + 6), p(item.x, item.y + 6), item.color, scale * 0.8)
        else:
            draw.rounded_rectangle(
                [p(item.x, item.y), p(item.x + 20, item.y + 12)],
                radius=3 * scale,
                fill=_fill(item.color),
                outline=item.color,
                width=max(1, int(1.5 * scale)),
            )
        draw.text(p(item.x + 26, item.y), item.label, fill="#424242", font=font(SMALL_FONT_SIZE))
    for route in layout.routes:
        pts = [p(x, y) for x, y in route.points]
        draw.line(pts, fill=route.color, width=max(1, int(1.8 * scale)), joint="curve")
        _arrow(draw, pts[-1], pts[-2], route.color, scale)
        lx, ly = route.label_at
        f = font(SMALL_FONT_SIZE)
        left, top, right, bottom = draw.textbbox(p(lx, ly), route.type, font=f, anchor="ms")
        draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill="#ffffff")
        draw.text(p(lx, ly), route.type, fill=route.color, font=f, anchor="ms")
    for box in layout.boxes:
        draw.rounded_rectangle(
            [p(box.x, box.y), p(box.x + box.w, box.y + box.h)],
            radius=6 * scale,
            fill=_fill(box.color),
            outline=box.color,
            width=max(1, int((2.5 if box.kind == "stage" else 1.5) * scale)),
        )
        for i, line in enumerate(box.lines):
            ty = box.y + PAD_Y + (i + 1) * LINE_HEIGHT - 3.5
            draw.text(p(box.x + PAD_X, ty), line, fill="#212121", font=font(FONT_SIZE), anchor="ls")
            if box.bold_first and i == 0:  # the default font has no bold face: overdraw one pixel right
                draw.text(p(box.x + PAD_X + 0.5, ty), line, fill="#212121", font=font(FONT_SIZE), anchor="ls")
    return image
