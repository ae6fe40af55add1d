"""Small self-contained SVG charts for the report (no plotting library needed on the controller)."""

from __future__ import annotations

from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def _frame(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n'
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>\n'
            + "\n".join(body) + "\n</svg>\n")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 2.5, 5, 10):
        magnitude = 10 ** len(str(int(value))) / 10
        if value <= step * magnitude:
            return step * magnitude
    return value


def bars(title: str, labels: list[str], groups: dict[str, list[float]], unit: str, width: int = 900) -> str:
    """Grouped horizontal bars: one row per label, one bar per group (e.g. allocation, p95, peak)."""
    row = 8 * len(groups) + 8
    left, top, right = 170, 40, 60
    height = top + row * len(labels) + 40
    vmax = _nice_max(max((v for values in groups.values() for v in values), default=1))
    scale = (width - left - right) / vmax
    body = []
    for tick in range(6):
        x = left + tick * (width - left - right) / 5
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 30}" stroke="#ddd"/>')
        body.append(f'<text x="{x:.1f}" y="{height - 16}" text-anchor="middle">{vmax * tick / 5:g}</text>')
    body.append(f'<text x="{width - right}" y="{height - 4}" text-anchor="end">{escape(unit)}</text>')
    for index, label in enumerate(labels):
        y = top + index * row
        body.append(f'<text x="{left - 6}" y="{y + row / 2 + 3:.1f}" text-anchor="end">{escape(label)}</text>')
        for gi, (name, values) in enumerate(groups.items()):
            w = max(0.0, values[index] * scale)
            body.append(f'<rect x="{left}" y="{y + 4 + gi * 8}" width="{w:.1f}" height="7" fill="{PALETTE[gi % len(PALETTE)]}">'
                        f'<title>{escape(label)} {escape(name)}: {values[index]:.2f} {escape(unit)}</title></rect>')
    for gi, name in enumerate(groups):
        x = left + gi * 150
        body.append(f'<rect x="{x}" y="24" width="10" height="8" fill="{PALETTE[gi % len(PALETTE)]}"/>'
                    f'<text x="{x + 14}" y="32">{escape(name)}</text>')
    return _frame(width, height, title, body)


def lines(title: str, series: dict[str, list[tuple[float, float]]], unit: str, hlines: dict[str, float] | None = None,
          width: int = 900, height: int = 300) -> str:
    """Time series (x = unix time, labelled in hours from the start), optional horizontal limits."""
    left, right, top, bottom = 60, 20, 40, 40
    points = [p for values in series.values() for p in values]
    if not points:
        return _frame(width, height, title + " (no data)", [])
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    span = max(t1 - t0, 1.0)
    vmax = _nice_max(max([v for _, v in points] + list((hlines or {}).values())))
    sx = (width - left - right) / span
    sy = (height - top - bottom) / vmax
    body = []
    for tick in range(6):
        y = height - bottom - tick * (height - top - bottom) / 5
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{vmax * tick / 5:g}</text>')
    for tick in range(5):
        x = left + tick * (width - left - right) / 4
        body.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle">+{span * tick / 4 / 3600:.2f} h</text>')
    body.append(f'<text x="12" y="{top - 8}">{escape(unit)}</text>')
    for index, (name, values) in enumerate(series.items()):
        path = " ".join(f"{left + (t - t0) * sx:.1f},{height - bottom - v * sy:.1f}" for t, v in values)
        color = PALETTE[index % len(PALETTE)]
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"><title>{escape(name)}</title></polyline>')
        body.append(f'<text x="{left + 10 + index * 150}" y="32" fill="{color}">{escape(name)}</text>')
    for name, value in (hlines or {}).items():
        y = height - bottom - value * sy
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#555" stroke-dasharray="4 3"/>')
        body.append(f'<text x="{width - right}" y="{y - 3:.1f}" text-anchor="end">{escape(name)}</text>')
    return _frame(width, height, title, body)
