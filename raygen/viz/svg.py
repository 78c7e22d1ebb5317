"""Small SVG charts for `raygen report`: axes with ticks, lines, points, rectangles, bars, histograms.

Plain SVG text a browser draws without scripts or downloads (the report is one self-contained file).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["Chart", "bar_chart", "histogram", "PALETTE"]

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


class Chart:
    """An x-y plot area; add marks, then ``svg()``. ``equal``: one unit is as long on both axes (maps)."""

    def __init__(self, title: str, xlabel: str, ylabel: str, xlim: tuple[float, float], ylim: tuple[float, float],
                 *, width: int = 560, height: int = 360, equal: bool = False, css_id: str = ""):
        self.title, self.xlabel, self.ylabel, self.css_id = title, xlabel, ylabel, css_id
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = 62, 16, 34, 46
        x0, x1 = xlim
        y0, y1 = ylim
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x0 + 0.5
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y0 + 0.5
        if equal:  # widen one range so a metre is a metre both ways
            pw, ph = width - self.left - self.right, height - self.top - self.bottom
            scale = max((x1 - x0) / pw, (y1 - y0) / ph)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            x0, x1, y0, y1 = cx - scale * pw / 2, cx + scale * pw / 2, cy - scale * ph / 2, cy + scale * ph / 2
        self.xlim, self.ylim = (x0, x1), (y0, y1)
        self.marks: list[str] = []
        self.legend: list[tuple[str, str]] = []

    def sx(self, x: float) -> float:
        x0, x1 = self.xlim
        return self.left + (x - x0) / (x1 - x0) * (self.w - self.left - self.right)

    def sy(self, y: float) -> float:
        y0, y1 = self.ylim
        return self.h - self.bottom - (y - y0) / (y1 - y0) * (self.h - self.top - self.bottom)

    def polyline(self, xs: Sequence[float], ys: Sequence[float], colour: str, *, width: float = 1.5,
                 opacity: float = 1.0, label: str | None = None) -> None:
        pts = " ".join(f"{self.sx(x):.1f},{self.sy(y):.1f}" for x, y in zip(xs, ys)
                       if math.isfinite(x) and math.isfinite(y))
        if pts:
            self.marks.append(f'<polyline class="mark" points="{pts}" fill="none" stroke="{colour}" '
                              f'stroke-width="{width}" stroke-opacity="{opacity}"/>')
        if label:
            self.legend.append((label, colour))

    def points(self, xs: Sequence[float], ys: Sequence[float], colour: str, *, r: float = 3.0,
               label: str | None = None, shape: str = "circle") -> None:
        for x, y in zip(xs, ys):
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            px, py = self.sx(x), self.sy(y)
            if shape == "triangle":
                self.marks.append(f'<polygon class="mark" points="{px:.1f},{py - r:.1f} {px - r:.1f},{py + r:.1f} '
                                  f'{px + r:.1f},{py + r:.1f}" fill="{colour}"/>')
            else:
                self.marks.append(f'<circle class="mark" cx="{px:.1f}" cy="{py:.1f}" r="{r}" fill="{colour}"/>')
        if label:
            self.legend.append((label, colour))

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: str, *, opacity: float = 1.0) -> None:
        a, b = sorted((self.sx(x0), self.sx(x1)))
        c, d = sorted((self.sy(y0), self.sy(y1)))
        self.marks.append(f'<rect class="mark" x="{a:.1f}" y="{c:.1f}" width="{max(b - a, 0.5):.1f}" '
                          f'height="{max(d - c, 0.5):.1f}" fill="{colour}" fill-opacity="{opacity}"/>')

    def segment(self, x0: float, y0: float, x1: float, y1: float, colour: str, *, width: float = 1.5,
                dash: str = "") -> None:
        style = f' stroke-dasharray="{dash}"' if dash else ""
        self.marks.append(f'<line class="mark" x1="{self.sx(x0):.1f}" y1="{self.sy(y0):.1f}" x2="{self.sx(x1):.1f}" '
                          f'y2="{self.sy(y1):.1f}" stroke="{colour}" stroke-width="{width}"{style}/>')

    def label(self, x: float, y: float, text: str, *, colour: str = "#333") -> None:
        self.marks.append(f'<text x="{self.sx(x) + 5:.1f}" y="{self.sy(y) - 5:.1f}" font-size="11" '
                          f'fill="{colour}">{html.escape(text)}</text>')

    def svg(self) -> str:
        w, h, left, bottom = self.w, self.h, self.left, self.bottom
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}"'
               + (f' id="{self.css_id}"' if self.css_id else "") + ' font-family="sans-serif">',
               f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">'
               f'{html.escape(self.title)}</text>',
               f'<rect x="{left}" y="{self.top}" width="{w - left - self.right}" height="{h - self.top - bottom}" '
               'fill="#fafafa" stroke="#999"/>']
        for t in _ticks(*self.xlim):
            x = self.sx(t)
            out.append(f'<line x1="{x:.1f}" y1="{h - bottom}" x2="{x:.1f}" y2="{h - bottom + 4}" stroke="#666"/>'
                       f'<text x="{x:.1f}" y="{h - bottom + 16}" text-anchor="middle" font-size="10">{_fmt(t)}</text>')
        for t in _ticks(*self.ylim):
            y = self.sy(t)
            out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#666"/>'
                       f'<text x="{left - 6}" y="{y + 3:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>')
        out.append(f'<text x="{left + (w - left - self.right) / 2}" y="{h - 8}" text-anchor="middle" '
                   f'font-size="11">{html.escape(self.xlabel)}</text>')
        out.append(f'<text x="14" y="{self.top + (h - self.top - bottom) / 2}" text-anchor="middle" font-size="11" '
                   f'transform="rotate(-90 14 {self.top + (h - self.top - bottom) / 2})">'
                   f'{html.escape(self.ylabel)}</text>')
        clip = f"clip-{self.css_id or id(self)}"
        out.append(f'<clipPath id="{clip}"><rect x="{left}" y="{self.top}" width="{w - left - self.right}" '
                   f'height="{h - self.top - bottom}"/></clipPath>'
                   f'<g class="marks" clip-path="url(#{clip})">{"".join(self.marks)}</g>')
        for i, (name, colour) in enumerate(self.legend):
            y = self.top + 14 + 14 * i
            out.append(f'<rect x="{w - self.right - 150}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
                       f'<text x="{w - self.right - 136}" y="{y}" font-size="10">{html.escape(name)}</text>')
        out.append("</svg>")
        return "".join(out)


def histogram(title: str, values: Sequence[float], *, bins: int = 20, lo: float | None = None,
              hi: float | None = None, xlabel: str = "", marker: float | None = None, marker_label: str = "",
              css_id: str = "") -> str:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    lo = float(v.min()) if lo is None and v.size else (lo if lo is not None else 0.0)
    hi = float(v.max()) if hi is None and v.size else (hi if hi is not None else 1.0)
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi if hi > lo else lo + 1))
    chart = Chart(title, xlabel, "episodes", (edges[0], edges[-1]), (0, max(1, int(counts.max(initial=0)) * 1.1)),
                  css_id=css_id)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            chart.rect(a, 0, b, c, PALETTE[0], opacity=0.8)
    if marker is not None:
        chart.segment(marker, 0, marker, chart.ylim[1], PALETTE[3], dash="4 3")
        chart.label(marker, chart.ylim[1] * 0.92, marker_label, colour=PALETTE[3])
    return chart.svg()


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], *, xlabel: str = "",
              css_id: str = "", width: int = 760) -> str:
    """Horizontal bars, one per label (longest first as given)."""
    n = max(1, len(labels))
    height = 50 + 22 * n
    top = max([float(x) for x in values], default=1.0) or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
           + (f' id="{css_id}"' if css_id else "") + ' font-family="sans-serif">',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">'
           f'{html.escape(title)}</text><g class="marks">']
    text_w, bar_w = int(width * 0.55), width * 0.4
    for i, (lab, val) in enumerate(zip(labels, values)):
        y = 32 + 22 * i
        bw = max(1.0, bar_w * float(val) / top)
        short = lab if len(lab) <= 90 else lab[:87] + "..."
        out.append(f'<text x="{text_w - 6}" y="{y + 13}" text-anchor="end" font-size="11">{html.escape(short)}</text>'
                   f'<rect class="mark" x="{text_w}" y="{y + 2}" width="{bw:.1f}" height="15" fill="{PALETTE[3]}"/>'
                   f'<text x="{text_w + bw + 4:.1f}" y="{y + 13}" font-size="11">{_fmt(float(val))}</text>')
    if not labels:
        out.append(f'<text x="{width / 2}" y="44" text-anchor="middle" font-size="12">none</text>')
    out.append(f'</g><text x="{text_w + bar_w / 2}" y="{height - 6}" text-anchor="middle" font-size="11">'
               f'{html.escape(xlabel)}</text></svg>')
    return "".join(out)
