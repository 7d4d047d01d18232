"""The drill's report: markdown for a pull request or an incident review, a timeline picture (SVG,
written here), and the JSON document with every measurement."""

from __future__ import annotations

import html
import json
from pathlib import Path

from orchestrator.drill.model import DrillResult, Projection, Stats, project


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f} s"


def _row(name: str, st: Stats) -> str:
    return f"| {name} | {_s(st.p50)} | {_s(st.p95)} | {_s(st.max)} |"


def markdown(result: DrillResult, picture: str | None = None) -> str:
    r = result
    o = r.options
    affected = r.affected
    lost = sum(d.lost for d in r.devices)
    lost_acked = sum(d.lost_after_ack for d in r.devices)
    dup = sum(d.duplicated for d in r.devices)
    published = sum(d.published for d in r.devices)
    found_rep = sum(1 for d in affected if d.shadow_reported_found)
    found_des = sum(1 for d in affected if d.shadow_desired_found)
    restored = sum(1 for d in r.devices if d.shadow_restored)
    back = sum(1 for d in affected if d.rto is not None)
    lines = [
        f"# Game day: {r.killed} goes dark ({'PASS' if r.ok else 'FAIL'})",
        "",
        f"`orchestrate drill --local --devices {o.devices} --routing {o.routing.value} --kill {r.killed}` "
        f"(env {r.env}, domain `{r.domain}`, regions {', '.join(r.regions)}, failover control `{r.control}`)",
        "",
        f"- **{back}/{len(affected)}** devices connected to {r.killed} reconnected to **{r.survivor}**"
        + (f", the last {_s((r.all_back_at or r.killed_at) - r.killed_at)} after the kill." if r.all_back_at else "."),
        f"- QoS 1 telemetry: {published} published, **{lost} lost** ({lost_acked} of them acknowledged by the "
        f"killed broker before it died), {dup} duplicated (redelivered after a lost PUBACK).",
        f"- Shadows on arrival in {r.survivor}: last reported state found for {found_rep}/{len(affected)}, "
        f"desired state for {found_des}/{len(affected)}; after the drill {restored}/{len(r.devices)} shadows "
        "hold the device's last reported state (the device re-reports it).",
    ]
    if r.refused_unregistered is not None:
        lines.append(f"- A certificate registered in the primary after the last registry sync was "
                     f"{'refused' if r.refused_unregistered else 'ACCEPTED'} by {r.survivor}.")
    lines += [
        "",
        "## Recovery time (devices that were on the killed region)",
        "",
        "RTO = health-check detection + DNS TTL + device backoff, per device (the components add up).",
        "",
        "| | p50 | p95 | max |",
        "|---|---|---|---|",
        _row("RTO", r.rto()),
        _row("detection (kill → DNS answers the survivor)", r.component("detection")),
        _row("TTL (answer changed → device's cached answer expired)", r.component("ttl")),
        _row("backoff (fresh answer → connected: SDK's next attempt + handshake)", r.component("backoff")),
        "",
        f"Scaled for the local drill (time scale {o.time_scale:g}): health checks every "
        f"{r.scaled.get('health_check_interval_s', 0):g} s, "
        f"failure threshold {r.scaled.get('failure_threshold', 3):g}, "
        f"TTL {r.scaled.get('ttl_s', 0):g} s (Route 53 as the DNS program declares it: 30 s, 3, 60 s). "
        "Device backoff is the SDK's own, unscaled (full jitter, 1 s to 120 s). Brokers and health checks on "
        f"port {r.scaled.get('tls_port', 0):g}" + (" (as in AWS)." if r.scaled.get("tls_port") == 443 else
                                                   " (AWS: 443, which this user may not bind here).")
        + (f" Each region's MQTT canary runs every {r.scaled['canary_period_s']:g} s (AWS: every minute) and its "
           "alarm needs 2 failed periods; a record's health check is its TCP check and that alarm together."
           if r.scaled.get("canary_period_s") else ""),
        "",
        "## At Route 53's real intervals (on paper, same model)",
        "",
    ]
    lines += projection_table([project(), project(interval=10.0)])
    lines += ["", "## Transitions through the orchestrator", "", "| operation | ok | seconds | steps |",
              "|---|---|---|---|"]
    for s in r.steps:
        lines.append(f"| {s.operation} | {'yes' if s.ok else 'NO'} | {s.seconds:.1f} | {s.detail} |")
    lines += ["", "## Timeline", ""]
    t0 = r.killed_at
    events = [(r.killed_at, f"{r.killed} broker killed")]
    events += [(h.at, f"health check of {h.fqdn}: {'healthy' if h.healthy else 'unhealthy'}") for h in r.health]
    events += [(c.at, f"DNS for resolvers near {c.client_region}: {c.before} → {c.after}") for c in r.dns]
    if r.all_back_at:
        events.append((r.all_back_at, f"last device reconnected to {r.survivor}"))
    for at, text in sorted(events):
        lines.append(f"- t{at - t0:+.2f} s: {text}")
    if picture:
        lines += ["", f"![timeline]({picture})"]
    lines += ["", "## Devices", "", "| device | near | before | after | RTO | detection | TTL | backoff | attempts "
              "| published | lost | dup | shadow found (reported/desired) |", "|" + "---|" * 13]
    for d in r.devices:
        found = "–" if d.shadow_reported_found is None else \
            f"{'yes' if d.shadow_reported_found else 'no'}/{'yes' if d.shadow_desired_found else 'no'}"
        lines.append(f"| {d.thing} | {d.location} | {d.before} | {d.after} | {_s(d.rto)} | {_s(d.detection)} | "
                     f"{_s(d.ttl)} | {_s(d.backoff)} | {d.attempts} | {d.published} | {d.lost} | {d.duplicated} | "
                     f"{found} |")
    return "\n".join(lines) + "\n"


def projection_table(projections: list[Projection]) -> list[str]:
    out = ["| health check | TTL | detection | TTL wait p50/p95 | backoff wait p50/p95 | RTO p50 | RTO p95 | RTO max |",
           "|---|---|---|---|---|---|---|---|"]
    for p in projections:
        out.append(f"| every {p.interval:g} s, threshold {p.threshold} | {p.ttl:g} s | {p.detection:.0f} s (mean) | "
                   f"{p.ttl_wait.p50:.0f} / {p.ttl_wait.p95:.0f} s | {p.backoff.p50:.0f} / {p.backoff.p95:.0f} s | "
                   f"{p.rto.p50:.0f} s | {p.rto.p95:.0f} s | {p.rto.max:.0f} s |")
    return out


def svg(result: DrillResult, width: int = 900, height: int = 420) -> str:
    """Connected devices per region (top) and received messages per second (bottom) over time."""
    r = result
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    if not r.samples:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60"><text x="10" y="30">no samples' \
               '</text></svg>'
    t_start, t_end = r.samples[0][0], r.samples[-1][0]
    span = max(1e-6, t_end - t_start)
    left, right, panel = 60, width - 20, (height - 90) / 2
    max_conn = max(1, max((max(c.values(), default=0) for _, c, _ in r.samples), default=1))
    max_rate = max(1, max((max(m.values(), default=0) for _, _, m in r.samples), default=1))

    def x(t: float) -> float:
        return left + (t - t_start) / span * (right - left)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="11">', f'<rect width="{width}" height="{height}" fill="white"/>']
    for index, (title, top, key, top_value) in enumerate(
            (("connected devices", 30.0, 1, max_conn), ("messages received / s", 60.0 + panel, 2, max_rate))):
        parts.append(f'<text x="{left}" y="{top - 8}" font-weight="bold">{title} (max {top_value})</text>')
        parts.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{panel}" fill="none" stroke="#999"/>')
        for ci, region in enumerate(r.regions):
            values = [(s[0], (s[1] if key == 1 else s[2]).get(region, 0)) for s in r.samples]
            pts = " ".join(f"{x(t):.1f},{top + panel - v / top_value * panel:.1f}" for t, v in values)
            parts.append(f'<polyline fill="none" stroke="{colours[ci % 4]}" stroke-width="1.5" points="{pts}"/>')
            if index == 0:
                parts.append(f'<text x="{right - 150}" y="{top + 14 + 14 * ci}" fill="{colours[ci % 4]}">'
                             f'{html.escape(region)}</text>')
    marks = [(r.killed_at, "kill", "#000")]
    if r.detected_at:
        marks.append((r.detected_at, "detected", "#e67e22"))
    if r.dns_changed_at:
        marks.append((r.dns_changed_at, "DNS change", "#8e44ad"))
    if r.all_back_at:
        marks.append((r.all_back_at, "all reconnected", "#27ae60"))
    for i, (at, label, colour) in enumerate(marks):
        xx = x(at)
        parts.append(f'<line x1="{xx:.1f}" y1="22" x2="{xx:.1f}" y2="{height - 40}" stroke="{colour}" '
                     'stroke-dasharray="4,3"/>')
        parts.append(f'<text x="{xx + 3:.1f}" y="{height - 28 + 11 * (i % 2)}" fill="{colour}">{label}</text>')
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        t = t_start + frac * span
        parts.append(f'<text x="{x(t) - 10:.1f}" y="{height - 5}">{t - r.killed_at:+.0f} s</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write(result: DrillResult, directory: Path) -> dict[str, str]:
    from orchestrator.state import atomic_write_text

    directory.mkdir(parents=True, exist_ok=True)
    picture = directory / "timeline.svg"
    atomic_write_text(picture, svg(result))
    md = directory / "report.md"
    atomic_write_text(md, markdown(result, picture.name))
    js = directory / "report.json"
    atomic_write_text(js, json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return {"markdown": str(md), "picture": str(picture), "json": str(js)}
