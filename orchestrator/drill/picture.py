"""The drill's timeline picture (SVG, no dependency): connected devices and messages per second per
region over time, markers for the events (kill, detection, DNS change, failover, the killed region
healthy again, failback, last reconnection), x-axis ticks in seconds from the kill, and one bar per
affected device splitting its time away into detection / DNS TTL / backoff.

Labels are placed by `place`: a greedy lane layout over boxes estimated from the font size and the
number of characters (`text_box`), so no two labels overlap in any viewer that keeps a character
within CHAR_WIDTH x font size."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from orchestrator.drill.model import DeviceOutcome, DrillResult

FONT = 11.0
CHAR_WIDTH = 0.62  # a sans-serif character's advance, at most, as a fraction of the font size
MAX_BARS = 50
REGION_STYLE = (("#1f77b4", "", 3.0), ("#d62728", "6,3", 1.5), ("#2ca02c", "2,2", 1.5), ("#9467bd", "8,2,2,2", 1.5))
SEGMENTS = (("detection", "detection", "#e67e22"), ("ttl", "DNS TTL", "#8e44ad"), ("backoff", "backoff", "#3498db"))
OTHER_COLOUR = "#7f8c8d"


def text_box(x: float, y: float, text: str, size: float = FONT, anchor: str = "start") -> tuple[float, float, float,
                                                                                                   float]:
    """(x0, y0, x1, y1) of a text element whose baseline is at y, estimated."""
    w = len(text) * size * CHAR_WIDTH
    x0 = x - w / 2 if anchor == "middle" else x - w if anchor == "end" else x
    return x0, y - size, x0 + w, y + 0.25 * size


def overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place(wanted: list[tuple[float, str]], left: float, right: float, gap: float = 4.0,
          size: float = FONT) -> list[tuple[float, int]]:
    """Each label's (x, lane) for labels wanted at x: the label starts at x (or ends at `right`),
    in the first lane where it does not meet a label already placed. Lanes are `size` + 3 apart."""
    lanes: list[list[tuple[float, float]]] = []
    out = []
    for x, text in wanted:
        w = len(text) * size * CHAR_WIDTH
        x0 = min(max(left, x + 3), right - w)
        lane = 0
        while lane < len(lanes) and any(x0 < b + gap and a < x0 + w + gap for a, b in lanes[lane]):
            lane += 1
        if lane == len(lanes):
            lanes.append([])
        lanes[lane].append((x0, x0 + w))
        out.append((x0, lane))
    return out


def nice_step(span: float, slots: int) -> float:
    """A 1/2/5 x 10^n step giving at most `slots` intervals over `span`."""
    raw = span / max(1, slots)
    base = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


@dataclass(frozen=True)
class Marker:
    at: float
    label: str
    colour: str


def markers(r: DrillResult) -> list[Marker]:
    """The events the result holds, in time order."""
    out = [Marker(r.killed_at, "kill", "#000000")]
    if r.detected_at is not None:
        out.append(Marker(r.detected_at, "detected", "#e67e22"))
    if r.dns_changed_at is not None:
        out.append(Marker(r.dns_changed_at, "DNS change", "#8e44ad"))
    if r.all_back_at is not None:
        out.append(Marker(r.all_back_at, "all reconnected", "#27ae60"))
    for step, label, colour in (("failover", "failover", "#c0392b"), ("failback", "failback", "#16a085")):
        at = next((s.at for s in r.steps if s.operation == step and s.at is not None), None)
        if at is not None:
            out.append(Marker(at, label, colour))
    down = next((h for h in r.health if not h.healthy and h.at >= r.killed_at), None)
    if down is not None:
        up = next((h for h in r.health if h.fqdn == down.fqdn and h.healthy and h.at > down.at), None)
        if up is not None:
            out.append(Marker(up.at, f"{r.killed} healthy again", "#2980b9"))
    return sorted(out, key=lambda m: m.at)


def segments(d: DeviceOutcome) -> list[tuple[str, float, str]]:
    """The parts of a device's time away, in order; "other" is what the components do not explain."""
    parts = [(label, float(getattr(d, name)), colour) for name, label, colour in SEGMENTS
             if getattr(d, name) is not None]
    rest = (d.rto or 0.0) - sum(v for _, v, _ in parts)
    if abs(rest) > 1e-9:
        parts.append(("other", rest, OTHER_COLOUR))
    return parts


def svg(result: DrillResult, width: int = 900, height: int = 420) -> str:
    """The picture; `height` is that of the two time panels and their axis, the bars come below."""
    r = result
    if not r.samples:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60"><text x="10" y="30">no samples' \
               '</text></svg>\n'
    marks = markers(r)
    t_start = min(r.samples[0][0], *(m.at for m in marks))
    t_end = max(r.samples[-1][0], *(m.at for m in marks))
    span = max(1e-6, t_end - t_start)
    left, right = 60.0, width - 20.0

    def x(t: float) -> float:
        return left + (t - t_start) / span * (right - left)

    body: list[str] = []

    def text(tx: float, ty: float, s: str, colour: str = "#000", anchor: str = "start", extra: str = "") -> None:
        _text(body, tx, ty, s, colour, anchor, extra)

    # header: title and the regions' legend
    y = 16.0
    text(left, y, f"{r.killed} killed: devices and messages per region, seconds from the kill",
         extra=' font-weight="bold"')
    y += 18
    lx = left
    for ci, region in enumerate(r.regions):
        colour, dash, stroke = REGION_STYLE[ci % len(REGION_STYLE)]
        d = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(f'<line class="legend" x1="{lx:.1f}" y1="{y - 4:.1f}" x2="{lx + 24:.1f}" y2="{y - 4:.1f}" '
                    f'stroke="{colour}" stroke-width="{stroke:g}"{d}/>')
        text(lx + 28, y, region, colour)
        lx += 28 + len(region) * FONT * CHAR_WIDTH + 16
    # the markers' labels, in lanes above the panels
    placed = place([(x(m.at), m.label) for m in marks], left, right)
    lanes = 1 + max((lane for _, lane in placed), default=0)
    label_top = y + 8
    for m, (lx0, lane) in zip(marks, placed, strict=True):
        text(lx0, label_top + (lane + 1) * (FONT + 3), m.label, m.colour, extra=' class="marker-label"')
    y = label_top + lanes * (FONT + 3) + 10
    panel = max(60.0, (height - 120) / 2)
    max_conn = max(1, max((max(c.values(), default=0) for _, c, _ in r.samples), default=1))
    max_rate = max(1, max((max(m.values(), default=0) for _, _, m in r.samples), default=1))
    panel_spans: list[tuple[float, float]] = []
    for title, key, top_value in (("connected devices", 1, max_conn),
                                  ("messages received / s", 2, max_rate)):
        top = y + 16
        text(left, top - 5, f"{title} (max {top_value})", extra=' font-weight="bold"')
        body.append(f'<rect x="{left}" y="{top:.1f}" width="{right - left:.1f}" height="{panel:.1f}" fill="none" '
                    'stroke="#999"/>')
        for ci, region in enumerate(r.regions):
            colour, dash, stroke = REGION_STYLE[ci % len(REGION_STYLE)]
            d = f' stroke-dasharray="{dash}"' if dash else ""
            values = [(s[0], (s[1] if key == 1 else s[2]).get(region, 0)) for s in r.samples]
            pts = " ".join(f"{x(t):.1f},{top + panel - v / top_value * panel * 0.92:.1f}" for t, v in values)
            body.append(f'<polyline class="region" data-region="{html.escape(region)}" fill="none" '
                        f'stroke="{colour}" stroke-width="{stroke:g}"{d} points="{pts}"/>')
        panel_spans.append((top, top + panel))
        y = top + panel + 6
    panels_bottom = y - 6
    # each marker is drawn inside the panels only, so it never crosses a panel's title
    for m in marks:
        xx = x(m.at)
        for y0, y1 in panel_spans:
            body.append(f'<line class="marker" data-label="{html.escape(m.label)}" x1="{xx:.1f}" y1="{y0:.1f}" '
                        f'x2="{xx:.1f}" y2="{y1:.1f}" stroke="{m.colour}" stroke-dasharray="4,3"/>')
    # x axis: ticks every nice step of seconds from the kill
    step = nice_step(span, max(2, int((right - left) // 70)))
    k = math.ceil((t_start - r.killed_at) / step)
    while r.killed_at + k * step <= t_end + 1e-9:
        xx = x(r.killed_at + k * step)
        body.append(f'<line class="tick" x1="{xx:.1f}" y1="{panels_bottom:.1f}" x2="{xx:.1f}" '
                    f'y2="{panels_bottom + 5:.1f}" stroke="#000"/>')
        text(xx, panels_bottom + 17, f"{k * step:+g} s", anchor="middle", extra=' class="tick-label"')
        k += 1
    y = panels_bottom + 40
    y = _bars(r, body, left, right, y)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{math.ceil(y)}" '
            f'font-family="sans-serif" font-size="{FONT:g}">')
    return "\n".join([head, f'<rect width="{width}" height="{math.ceil(y)}" fill="white"/>', *body, "</svg>"]) + "\n"


def _text(body: list[str], x: float, y: float, s: str, colour: str = "#000", anchor: str = "start",
          extra: str = "") -> None:
    a = "" if anchor == "start" else f' text-anchor="{anchor}"'
    body.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{FONT:g}" fill="{colour}"{a}{extra}>'
                f'{html.escape(s)}</text>')


def _bars(r: DrillResult, body: list[str], left: float, right: float, y: float) -> float:
    """One bar per affected device that came back (slowest first, at most MAX_BARS): its RTO split
    into its components, on a scale of seconds from the kill. Returns the y below the section."""

    def put(x: float, y: float, s: str, colour: str = "#000", anchor: str = "start", extra: str = "") -> None:
        _text(body, x, y, s, colour, anchor, extra)

    back = sorted((d for d in r.affected if d.rto is not None), key=lambda d: -(d.rto or 0.0))
    never = [d for d in r.affected if d.rto is None]
    put(left, y, "time away per device (seconds from the kill), slowest first", extra=' font-weight="bold"')
    y += 18
    lx = left
    keys = [(label, colour) for _, label, colour in SEGMENTS]
    if any(label == "other" for d in back[:MAX_BARS] for label, _, _ in segments(d)):
        keys.append(("other", OTHER_COLOUR))
    for label, colour in keys:
        body.append(f'<rect class="segment-key" x="{lx:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        put(lx + 14, y, label)
        lx += 14 + len(label) * FONT * CHAR_WIDTH + 16
    y += 10
    if not back:
        put(left, y + 14, "no device of the killed region came back")
        return y + 30
    names_w = max(len(d.thing) for d in back[:MAX_BARS]) * FONT * CHAR_WIDTH
    x0 = max(left, 10 + names_w + 8)
    longest = max(sum(max(0.0, v) for _, v, _ in segments(d)) for d in back) or 1.0
    label_room = 70.0  # the total after each bar
    scale = (right - label_room - x0) / longest
    row = FONT + 5
    for d in back[:MAX_BARS]:
        y += row
        put(x0 - 8, y, d.thing, anchor="end")
        bx = x0
        body.append(f'<g class="bar" data-device="{html.escape(d.thing)}" data-rto="{d.rto:.6f}">')
        for label, v, colour in segments(d):
            w = max(0.0, v) * scale
            body.append(f'<rect class="segment" data-part="{label}" data-seconds="{v:.6f}" x="{bx:.2f}" '
                        f'y="{y - FONT + 1:.1f}" width="{w:.2f}" height="{FONT:g}" fill="{colour}">'
                        f'<title>{html.escape(d.thing)}: {label} {v:.2f} s</title></rect>')
            bx += w
        body.append("</g>")
        put(bx + 4, y, f"{d.rto:.2f} s")
    hidden = len(back) - min(len(back), MAX_BARS)
    notes = []
    if hidden:
        notes.append(f"{hidden} more devices not shown (the {MAX_BARS} slowest are)")
    if never:
        notes.append(f"{len(never)} device{'s' if len(never) != 1 else ''} never came back")
    for note in notes:
        y += row
        put(left, y, note, extra=' class="note"')
    # the bars' own axis
    y += 8
    step = nice_step(longest, max(2, int((right - label_room - x0) // 70)))
    k = 0
    while k * step <= longest + 1e-9:
        xx = x0 + k * step * scale
        body.append(f'<line class="bar-tick" x1="{xx:.1f}" y1="{y:.1f}" x2="{xx:.1f}" y2="{y + 5:.1f}" stroke="#000"/>')
        put(xx, y + 17, f"{k * step:g} s", anchor="middle")
        k += 1
    return y + 28
