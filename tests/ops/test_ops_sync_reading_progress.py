"""Issue 23 item 6: a sync is not silent while it reads both registries. Before the apply's bar has a
total, the progress display shows the requests sent so far, their rate and the time spent (a
terminal), or a line every few seconds (a file); against a real moto server."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.aws import AwsContext
from orchestrator.console import Console, Progress
from orchestrator.registry.api import SyncSettings, sync_registry
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import seed

READING = re.compile(r"sync a -> b: reading: ([\d,]+) requests  [\d,]+/s  \d+s")


def _sync(ctx: AwsContext, bar: Progress) -> Any:
    # reads capped at 40/s: the reading takes a second or more, the pulse ticks every 0.25 s
    settings = SyncSettings(rate=10_000.0, read_rate=40.0, uniform=True, shadows=False)
    return sync_registry(ctx, SRC, DST, settings=settings, progress=bar)


@pytest.mark.parametrize("tty", [True, False])
def test_the_reads_before_the_apply_show_their_requests_and_rate(
        ctx: AwsContext, iot: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(Progress, "LINE_EVERY", 0.2)
    seed(iot(SRC), 12)
    err: list[str] = []
    bar = Progress(Console(out=lambda _t: None, err=err.append), "sync a -> b", unit="changes", tty=tty)
    report = _sync(ctx, bar)
    assert report.ok, report.errors
    shown = [(i, int(m.group(1).replace(",", ""))) for i, e in enumerate(err) for m in [READING.search(e)] if m]
    assert len(shown) >= 2, err[:5]
    counts = [n for _, n in shown]
    assert counts == sorted(counts) and counts[-1] > 0  # it counts up, from requests really sent
    assert counts[-1] <= report.read_calls + report.write_calls
    first_bar = next(i for i, e in enumerate(err) if "changes" in e and "/" in e and "[" in e)
    assert max(i for i, _ in shown) < first_bar  # the apply's bar takes over; no reading line after it


def test_nothing_is_shown_under_ci(ctx: AwsContext, iot: Callable[[str], Any],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    seed(iot(SRC), 3)
    err: list[str] = []
    report = _sync(ctx, Progress(Console(out=lambda _t: None, err=err.append), "sync a -> b", tty=True))
    assert report.ok and err == []
