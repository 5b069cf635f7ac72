"""The stage graph's layout written directly as SVG: no plotting library on the critical path.

Every node and edge is a group with an id (``n<i>``, ``e<i>``) and a ``<title>`` tooltip carrying
its evidence; in the stand-alone file each node links to ``report.html#n<i>``. Every text is
XML-escaped after :func:`emulator.render.model.clean` removed control characters.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from emulator.render.layout import (
    FONT_SIZE,
    LINE_HEIGHT,
    PAD_X,
    PAD_Y,
    SMALL_FONT_SIZE,
    TITLE_FONT_SIZE,
    Layout,
    text_width,
)

FONT = "DejaVu Sans, Segoe UI, Helvetica, Arial, sans-serif"
ARROW = 7


def _fill(color: str) -> str:
    """A light tint of ``color`` (#rrggbb) for a box's background."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return "#{:02x}{:02x}{:02x}".format(*(int(c + (255 - c) * 0.86) for c in (r, g, b)))


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def render_svg(layout: Layout, *, link_prefix: str | None = "report.html#", standalone: bool = True) -> str:
    """The layout as one SVG document (or an inline ``<svg>`` element when not ``standalone``)."""
    w, h = _num(layout.width), _num(layout.height)
    out: list[str] = []
    if standalone:
        out.append('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{w}" height="{h}" viewBox="0 0 {w} {h}" class="stage-graph" role="img" '
        f"aria-label={quoteattr('stage graph of ' + layout.title)} font-family={quoteattr(FONT)}>\n"
    )
    out.append(f"<title>{escape(layout.title)}: {escape(layout.subtitle)}</title>\n")
    colors = sorted({r.color for r in layout.routes} | {item.color for item in layout.legend if item.edge})
    out.append("<defs>\n")
    for color in colors:
        out.append(
            f'<marker id="a{color[1:]}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="{ARROW}" '
            f'markerHeight="{ARROW}" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/>'
            "</marker>\n"
        )
    out.append("</defs>\n")
    out.append(f'<rect width="{w}" height="{h}" fill="#ffffff"/>\n')
    out.append(
        f'<text x="24" y="{24 + TITLE_FONT_SIZE}" font-size="{TITLE_FONT_SIZE}" font-weight="bold" '
        f'fill="#212121">{escape(layout.title)}</text>\n'
        f'<text x="24" y="{24 + TITLE_FONT_SIZE + 6 + SMALL_FONT_SIZE}" font-size="{SMALL_FONT_SIZE + 1}" '
        f'fill="#616161">{escape(layout.subtitle)}</text>\n'
    )
    out.append('<g class="legend">\n')
    for item in layout.legend:
        x, y = item.x, item.y
        if item.edge:
            out.append(
                f'<line x1="{_num(x)}" y1="{_num(y + 6)}" x2="{_num(x + 20)}" y2="{_num(y + 6)}" '
                f'stroke="{item.color}" stroke-width="2" marker-end="url(#a{item.color[1:]})"/>'
            )
        else:
            out.append(
                f'<rect x="{_num(x)}" y="{_num(y)}" width="20" height="12" rx="3" fill="{_fill(item.color)}" '
                f'stroke="{item.color}" stroke-width="1.5"/>'
            )
        out.append(
            f'<text x="{_num(x + 26)}" y="{_num(y + 10)}" font-size="{SMALL_FONT_SIZE}" fill="#424242">'
            f"{escape(item.label)}</text>\n"
        )
    out.append("</g>\n")
    out.append('<g class="edges">\n')
    for route in layout.routes:
        points = " ".join(f"{_num(x)},{_num(y)}" for x, y in route.points)
        lx, ly = route.label_at
        lw = text_width(route.type, SMALL_FONT_SIZE)
        out.append(
            f'<g class="edge" id="e{route.index}" data-edge="{route.index}" data-type={quoteattr(route.type)}>'
            f"<title>{escape(route.tooltip)}</title>"
            f'<polyline points="{points}" fill="none" stroke="#ffffff" stroke-opacity="0" stroke-width="9"/>'
            f'<polyline points="{points}" fill="none" stroke="{route.color}" stroke-width="1.8" '
            f'stroke-linejoin="round" marker-end="url(#a{route.color[1:]})"/>'
            f'<rect x="{_num(lx - lw / 2 - 2)}" y="{_num(ly - SMALL_FONT_SIZE + 1)}" width="{_num(lw + 4)}" '
            f'height="{SMALL_FONT_SIZE + 2}" fill="#ffffff" fill-opacity="0.85"/>'
            f'<text x="{_num(lx)}" y="{_num(ly)}" font-size="{SMALL_FONT_SIZE}" text-anchor="middle" '
            f'fill="{route.color}">{escape(route.type)}</text></g>\n'
        )
    out.append("</g>\n")
    out.append('<g class="nodes">\n')
    for box in layout.boxes:
        open_link = close_link = ""
        if link_prefix is not None:
            open_link = f"<a href={quoteattr(f'{link_prefix}n{box.index}')}>"
            close_link = "</a>"
        stroke = 2.5 if box.kind == "stage" else 1.5
        out.append(
            f'<g class="node" id="n{box.index}" data-node="{box.index}" data-kind={quoteattr(box.kind)}>'
            f"{open_link}<title>{escape(box.tooltip)}</title>"
            f'<rect x="{_num(box.x)}" y="{_num(box.y)}" width="{_num(box.w)}" height="{_num(box.h)}" rx="6" '
            f'fill="{_fill(box.color)}" stroke="{box.color}" stroke-width="{stroke}"/>'
        )
        for i, line in enumerate(box.lines):
            weight = ' font-weight="bold"' if box.bold_first and i == 0 else ""
            ty = box.y + PAD_Y + (i + 1) * LINE_HEIGHT - 3.5
            out.append(
                f'<text x="{_num(box.x + PAD_X)}" y="{_num(ty)}" font-size="{FONT_SIZE}"{weight} '
                f'fill="#212121">{escape(line)}</text>'
            )
        out.append(f"{close_link}</g>\n")
    out.append("</g>\n</svg>\n")
    return "".join(out)
