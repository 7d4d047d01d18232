"""The drill's picture as a browser draws it (issue 23 item 7): headless Chromium lays the SVG out
with its real fonts and a script in the page reads back every element's box. The quick tier's
tests (tests/orchestrator/test_drill_picture.py) estimate text boxes; these check that the estimate
holds in a real browser and that nothing a person reads overlaps. Chromium is part of this tier's
set-up (`make browser-deps`): a missing one fails, never skips."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.drill.model import DeviceOutcome, Routing
from orchestrator.drill.picture import text_box
from orchestrator.drill.report import svg
from tests.browser import measure
from tests.orchestrator.test_drill_picture import PRIMARY, _device, _result

# on the killed region and never connected again: no bar, counted in a note
LOST = DeviceOutcome("device-lost", PRIMARY, PRIMARY, None, True, None, None, None, None, 9, 20, 5, 15, 0, 0,
                     None, None, False)

Box = list[float]
SLACK = 0.5  # px: anti-aliasing at a box's edge is not an overlap


def _meet(a: Box, b: Box) -> bool:
    return a[0] < b[2] - SLACK and b[0] < a[2] - SLACK and a[1] < b[3] - SLACK and b[1] < a[3] - SLACK


def _text_overlaps(page: dict[str, Any]) -> list[tuple[str, str]]:
    texts = page["texts"]
    return [(a["text"], b["text"]) for i, a in enumerate(texts) for b in texts[i + 1:] if _meet(a["box"], b["box"])]


def _lines_through_text(page: dict[str, Any], classes: set[str]) -> list[tuple[str, str]]:
    return [(line["label"] or line["cls"], t["text"]) for line in page["lines"] if line["cls"] in classes
            for t in page["texts"] if _meet(line["box"], t["box"])]


def test_the_check_sees_overlaps_in_the_browser() -> None:
    page = measure('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="100" font-family="sans-serif">'
                   '<text x="10" y="20" font-size="11">DNS change</text><text x="40" y="24" font-size="11">detected'
                   '</text><line class="marker" x1="20" y1="50" x2="20" y2="90" stroke="#000"/>'
                   '<text x="10" y="70" font-size="11">crossed</text></svg>')
    assert _text_overlaps(page) == [("DNS change", "detected")]
    assert _lines_through_text(page, {"marker"}) == [("marker", "crossed")]


PICTURES = {
    "failover": lambda: _result(),
    "latency": lambda: _result(routing=Routing.LATENCY),
    "capped": lambda: _result(tuple(_device(i, 3.0, (i % 7) * 0.5, (i % 11) * 0.3) for i in range(80))
                              + (_device(99, 0, 0, 0, moved=False), LOST)),
}


@pytest.fixture(scope="module", params=sorted(PICTURES))
def drawn(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, measure(svg(PICTURES[request.param]()))


def test_every_label_is_drawn_inside_the_picture_and_none_overlaps(drawn: tuple[str, dict[str, Any]]) -> None:
    name, page = drawn
    assert len(page["texts"]) > 20, name
    root = page["root"]
    outside = [t["text"] for t in page["texts"]
               if t["box"][0] < root[0] or t["box"][1] < root[1] or t["box"][2] > root[2] or t["box"][3] > root[3]]
    assert outside == [], name
    assert _text_overlaps(page) == [], name
    if name == "capped":
        notes = {t["text"] for t in page["texts"] if t["cls"] == "note"}
        assert notes == {"30 more devices not shown (the 50 slowest are)", "1 device never came back"}
    # a marker or an axis tick never runs through a word
    assert _lines_through_text(page, {"marker", "tick", "bar-tick", "legend"}) == [], name


def test_the_estimated_text_boxes_hold_in_the_browser(drawn: tuple[str, dict[str, Any]]) -> None:
    # the layout places labels by estimated width; the browser's real width must not exceed it
    name, page = drawn
    for t in page["texts"]:
        x0, _, x1, _ = text_box(0.0, 0.0, t["text"], t["size"])
        assert t["box"][2] - t["box"][0] <= (x1 - x0) + SLACK, (name, t["text"], t["family"])


def test_markers_and_their_labels_are_all_drawn() -> None:
    page = measure(svg(_result()))
    labels = {t["text"] for t in page["texts"] if t["cls"] == "marker-label"}
    assert labels == {"kill", "detected", "DNS change", "failover", f"{PRIMARY} healthy again", "failback",
                      "all reconnected"}
    assert {line["label"] for line in page["lines"] if line["cls"] == "marker"} == labels
    for line in (line for line in page["lines"] if line["cls"] == "marker"):
        assert line["box"][3] - line["box"][1] > 50  # visible inside the panels, not a dot


def test_each_bar_is_its_segments_end_to_end_on_one_scale(drawn: tuple[str, dict[str, Any]]) -> None:
    name, page = drawn
    by_device: dict[str, list[dict[str, Any]]] = {}
    for seg in page["segments"]:
        by_device.setdefault(seg["device"], []).append(seg)
    assert by_device, name
    scales = []
    for device, segs in by_device.items():
        for a, b in zip(segs, segs[1:], strict=False):
            assert abs(a["box"][2] - b["box"][0]) <= SLACK, (name, device)  # end to end, no gap
        for seg in segs:
            if seg["seconds"] > 0.05:
                scales.append((seg["box"][2] - seg["box"][0]) / seg["seconds"])
        assert sum(s["seconds"] for s in segs) == pytest.approx(segs[0]["rto"], abs=1e-5)
    assert max(scales) - min(scales) <= 0.02 * max(scales), name  # px per second: one scale for every bar
