"""The drill report's numbers and picture (issue 23 item 7), from hand-built results: no drill, no
network. The SVG is parsed with xml.etree; a label's box is estimated from its font size and its
number of characters (0.62 em a character, an upper bound for sans-serif text)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from orchestrator.drill.model import (
    DeviceOutcome,
    DnsChange,
    DrillOptions,
    DrillResult,
    HealthTransition,
    Routing,
    StepRecord,
)
from orchestrator.drill.report import markdown, svg
from orchestrator.drill.run import DrillOutcome

NS = "{http://www.w3.org/2000/svg}"
PRIMARY, SECONDARY = "eu-west-1", "eu-central-1"


def _device(i: int, detection: float, ttl: float, backoff: float, moved: bool = True) -> DeviceOutcome:
    rto = detection + ttl + backoff if moved else None
    return DeviceOutcome(f"device-{i:03d}", PRIMARY, PRIMARY if moved else SECONDARY, SECONDARY, moved, rto,
                         detection if moved else None, ttl if moved else None, backoff if moved else None,
                         3, 20, 20, 0, 0, 0, True, True, True)


# The issue's case: the p50 RTO is 17.3 s while the components' own p50s are 7.8, 1.9 and 8.2 s (17.9 s);
# the p50 device (device-003) is 7.8 + 1.3 + 8.2.
SKEWED = (_device(0, 7.8, 0.2, 12.0), _device(1, 7.8, 1.9, 8.9), _device(2, 7.8, 5.0, 1.0),
          _device(3, 7.8, 1.3, 8.2), _device(4, 7.8, 3.3, 0.5))


def _result(devices: tuple[DeviceOutcome, ...] = SKEWED, routing: Routing = Routing.FAILOVER,
            events: bool = True) -> DrillResult:
    killed_at = 100.0
    fqdn = {PRIMARY: f"{PRIMARY}.iot.example.com", SECONDARY: f"{SECONDARY}.iot.example.com"}
    samples = []
    for k in range(0, 61):
        t = 95.0 + k
        back = t >= killed_at + 10
        conn = {PRIMARY: 0 if killed_at <= t < 140 else 5, SECONDARY: 5 if back else 5}
        samples.append((t, conn, dict(conn)))  # latency: both regions carry the same numbers
    health = (HealthTransition(killed_at + 7.8, "hc-1", fqdn[PRIMARY], False),
              HealthTransition(killed_at + 41.0, "hc-1", fqdn[PRIMARY], True)) if events else ()
    dns = (DnsChange(killed_at + 7.9, None, fqdn[PRIMARY], fqdn[SECONDARY]),) if events else ()
    steps = (StepRecord("failover", True, 4.0, "dns: done", killed_at + 22.0),
             StepRecord("failback", True, 3.0, "dns: done", killed_at + 45.0)) if events else ()
    return DrillResult(
        options=DrillOptions(devices=len(devices), routing=routing), env="dev", domain="iot.example.com",
        regions=(PRIMARY, SECONDARY), killed=PRIMARY, survivor=SECONDARY, started=90.0, killed_at=killed_at,
        detected_at=killed_at + 7.8 if events else None, dns_changed_at=killed_at + 7.9 if events else None,
        all_back_at=killed_at + max((d.rto or 0.0) for d in devices) if events else None, devices=devices,
        steps=steps, health=health, dns=dns, samples=tuple(samples), refused_unregistered=None,
        scaled={"health_check_interval_s": 3, "failure_threshold": 3, "ttl_s": 6})


def _texts(root: ET.Element) -> list[ET.Element]:
    return list(root.iter(f"{NS}text"))


def _box(el: ET.Element, default_size: float) -> tuple[float, float, float, float]:
    size = float(el.get("font-size", default_size))
    text = "".join(el.itertext())
    w = len(text) * size * 0.62
    x, y = float(el.get("x", 0)), float(el.get("y", 0))
    anchor = el.get("text-anchor", "start")
    x0 = x - w / 2 if anchor == "middle" else x - w if anchor == "end" else x
    return x0, y - size, x0 + w, y + 0.25 * size


def _overlapping(root: ET.Element) -> list[tuple[str, str]]:
    default = float(root.get("font-size", 16))
    boxes = [("".join(t.itertext()), _box(t, default)) for t in _texts(root)]
    return [(a, b) for i, (a, p) in enumerate(boxes) for b, q in boxes[i + 1:]
            if p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3]]


@pytest.mark.parametrize("routing", [Routing.FAILOVER, Routing.LATENCY])
def test_no_two_labels_of_the_picture_overlap(routing: Routing) -> None:
    # the check itself sees two labels that overlap
    probe = ET.fromstring('<svg xmlns="http://www.w3.org/2000/svg" font-size="11"><text x="10" y="20">DNS change'
                          '</text><text x="40" y="24">detected</text><text x="10" y="60">apart</text></svg>')
    assert _overlapping(probe) == [("DNS change", "detected")]
    # detection and the DNS change are 0.1 s apart: their labels want the same place
    root = ET.fromstring(svg(_result(routing=routing)))
    assert _overlapping(root) == []
    assert len(_texts(root)) > 20


def test_markers_for_every_event_the_result_holds() -> None:
    root = ET.fromstring(svg(_result()))
    lines = {el.get("data-label") for el in root.iter(f"{NS}line") if el.get("class") == "marker"}
    assert lines == {"kill", "detected", "DNS change", "failover", f"{PRIMARY} healthy again", "failback",
                     "all reconnected"}
    labels = {"".join(t.itertext()) for t in _texts(root) if t.get("class") == "marker-label"}
    assert labels == lines
    bare = ET.fromstring(svg(_result(events=False)))
    assert {el.get("data-label") for el in bare.iter(f"{NS}line") if el.get("class") == "marker"} == {"kill"}


def test_x_axis_ticks_in_seconds_from_the_kill() -> None:
    root = ET.fromstring(svg(_result()))
    ticks = [el for el in root.iter(f"{NS}line") if el.get("class") == "tick"]
    labels = ["".join(t.itertext()) for t in _texts(root) if t.get("class") == "tick-label"]
    assert len(ticks) == len(labels) >= 4
    assert all(re.fullmatch(r"[+-]?\d+(\.\d+)? s", s) for s in labels), labels
    assert "+0 s" in labels  # the kill is a tick
    xs = [float(t.get("x1", 0)) for t in ticks]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


def test_both_regions_visible_with_a_legend_in_a_latency_run() -> None:
    root = ET.fromstring(svg(_result(routing=Routing.LATENCY)))
    lines = [el for el in root.iter(f"{NS}polyline") if el.get("class") == "region"]
    assert {el.get("data-region") for el in lines} == {PRIMARY, SECONDARY}
    first = next(el for el in lines if el.get("data-region") == PRIMARY)
    second = next(el for el in lines if el.get("data-region") == SECONDARY)
    # drawn on top of the first with a dash, in another colour: the line beneath shows through
    assert first.get("stroke") != second.get("stroke")
    assert second.get("stroke-dasharray") and not first.get("stroke-dasharray")
    assert float(first.get("stroke-width", 0)) > float(second.get("stroke-width", 0))
    legend = [el for el in root.iter(f"{NS}line") if el.get("class") == "legend"]
    assert [(el.get("stroke"), el.get("stroke-dasharray")) for el in legend] == [
        (first.get("stroke"), None), (second.get("stroke"), second.get("stroke-dasharray"))]
    assert {PRIMARY, SECONDARY} <= {"".join(t.itertext()) for t in _texts(root)}


def test_one_bar_per_device_whose_segments_add_up_to_its_rto() -> None:
    result = _result()
    root = ET.fromstring(svg(result))
    bars = [g for g in root.iter(f"{NS}g") if g.get("class") == "bar"]
    assert len(bars) == len(result.affected)
    by_thing = {d.thing: d for d in result.devices}
    for g in bars:
        device = by_thing[g.get("data-device", "")]
        parts = [(r.get("data-part"), float(r.get("data-seconds", 0))) for r in g.iter(f"{NS}rect")]
        assert [p for p, _ in parts] == ["detection", "DNS TTL", "backoff"]
        assert sum(v for _, v in parts) == pytest.approx(device.rto, abs=1e-5)
        widths = [float(r.get("width", 0)) for r in g.iter(f"{NS}rect")]
        assert sum(widths) > 0
    rtos = [float(g.get("data-rto", 0)) for g in bars]
    assert rtos == sorted(rtos, reverse=True)  # slowest first
    keys = {"".join(t.itertext()) for t in _texts(root)}
    assert {"detection", "DNS TTL", "backoff"} <= keys and "other" not in keys


def test_bars_are_capped_and_the_hidden_ones_counted() -> None:
    devices = tuple(_device(i, 3.0, (i % 7) * 0.5, (i % 11) * 0.3) for i in range(80)) + (
        _device(99, 0, 0, 0, moved=False),)
    root = ET.fromstring(svg(_result(devices)))
    bars = [g for g in root.iter(f"{NS}g") if g.get("class") == "bar"]
    assert len(bars) == 50
    assert "30 more devices not shown (the 50 slowest are)" in {"".join(t.itertext()) for t in _texts(root)}
    assert _overlapping(root) == []


def test_a_device_whose_components_do_not_explain_its_rto_shows_the_rest() -> None:
    odd = DeviceOutcome("odd", PRIMARY, PRIMARY, SECONDARY, True, 10.0, 3.0, 1.0, 1.0, 3, 20, 20, 0, 0, 0,
                        True, True, True)
    root = ET.fromstring(svg(_result((odd,))))
    (bar,) = [g for g in root.iter(f"{NS}g") if g.get("class") == "bar"]
    parts = {r.get("data-part"): float(r.get("data-seconds", 0)) for r in bar.iter(f"{NS}rect")}
    assert parts["other"] == pytest.approx(5.0) and sum(parts.values()) == pytest.approx(10.0)
    assert "other" in {"".join(t.itertext()) for t in _texts(root)}  # its key
    assert "- the device at the RTO p50, p95 and max, odd: RTO 10.00 s = detection 3.00 s + TTL 1.00 s + " \
           "backoff 1.00 s + other 5.00 s" in markdown(_result((odd,)))


def _sums(text: str) -> list[tuple[float, list[float]]]:
    """Every `T = a + b + c` the text states, as numbers."""
    out = []
    for m in re.finditer(r"(\d+\.\d+) ?s = ((?:[a-zA-Z ]*\d+\.\d+ ?s(?: \+ )?)+)", text):
        out.append((float(m.group(1)), [float(v) for v in re.findall(r"(\d+\.\d+) ?s", m.group(2))]))
    return out


def test_the_summary_line_adds_up() -> None:
    result = _result()
    assert result.rto().p50 == pytest.approx(17.3)
    assert (result.component("detection").p50, result.component("ttl").p50, result.component("backoff").p50) == \
        pytest.approx((7.8, 1.9, 8.2))  # 17.9: percentiles do not add up
    lines = DrillOutcome(result, {}).summary_lines()
    stated = _sums("\n".join(lines))
    assert stated, lines
    for total, parts in stated:
        assert round(sum(parts), 1) == total, (total, parts)
    assert any("device-003" in line and "17.3s = detection 7.8s + TTL 1.3s + backoff 8.2s" in line for line in lines)


def test_the_report_never_claims_percentile_rows_add_up() -> None:
    md = markdown(_result())
    assert "the components add up" not in md
    assert "do not add up to the RTO row" in md
    stated = _sums(md)
    assert len(stated) == 2  # the devices at p50, and at p95 and max (the same one of five)
    assert "- the device at the RTO p95 and max, device-000: RTO 20.00 s = " in md
    for total, parts in stated:
        assert round(sum(parts), 2) == total, (total, parts)
    assert "- the device at the RTO p50, device-003: RTO 17.30 s = detection 7.80 s + TTL 1.30 s + backoff " \
           "8.20 s" in md


def test_rounded_components_still_add_up_to_the_rounded_total() -> None:
    # 3 x 0.333... = 1.0: each part rounds to 0.3, the total to 1.0; the printed parts must make 1.0
    third = 1 / 3
    md = markdown(_result((_device(0, third, third, third),)))
    (stated,) = _sums(md)
    assert stated[0] == 1.0 and round(sum(stated[1]), 2) == 1.0
