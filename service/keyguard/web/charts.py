"""Server-side SVG charts: plain functions from series to an SVG fragment the template inlines (no script, no
network). Every number drawn is passed in; nothing is invented to fill a gap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 600, 180, 44, 22, 8


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class the stylesheet colours (sev-critical, weight, limit)
    points: list[tuple[datetime, float]]


@dataclass(frozen=True)
class Chart:
    """What the template draws: polylines in a fixed viewBox, axis labels, and a table of the last values for
    people and screen readers who would rather read."""

    title: str
    lines: list[tuple[Series, str]]  # (series, "x,y x,y ...")
    y_max: float
    start: datetime | None
    end: datetime | None
    empty: bool

    @property
    def viewbox(self) -> str:
        return f"0 0 {WIDTH} {HEIGHT}"

    @property
    def y_ticks(self) -> list[tuple[float, str]]:
        plot = HEIGHT - PAD_BOTTOM - PAD_TOP
        return [(PAD_TOP + plot * (1 - f), _num(self.y_max * f)) for f in (0.0, 0.5, 1.0)]

    @property
    def plot_box(self) -> tuple[int, int, int, int]:
        return PAD_LEFT, PAD_TOP, WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP

    @property
    def x_labels(self) -> tuple[str, str]:
        fmt = "%H:%M" if self.start and self.end and (self.end - self.start).days < 1 else "%m-%d %H:%M"
        return (self.start.strftime(fmt) if self.start else "", self.end.strftime(fmt) if self.end else "")


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def line_chart(title: str, series: list[Series], y_floor: float = 1.0) -> Chart:
    stamps = [t for s in series for t, _ in s.points]
    if not stamps:
        return Chart(title, [], y_floor, None, None, True)
    start, end = min(stamps), max(stamps)
    span = max((end - start).total_seconds(), 1.0)
    y_max = max([y_floor, *(v for s in series for _, v in s.points)])
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - PAD_TOP
    lines = []
    for s in series:
        coords = " ".join(
            f"{PAD_LEFT + plot_w * (t - start).total_seconds() / span:.1f},{PAD_TOP + plot_h * (1 - v / y_max):.1f}"
            for t, v in s.points)
        lines.append((s, coords))
    return Chart(title, lines, y_max, start, end, False)
