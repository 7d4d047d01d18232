"""The progress display of long work: a bar with totals and rate on a terminal, plain lines when
stderr is a file, nothing under --json or on CI; used by the registry sync and by `up`."""

from __future__ import annotations

import re

import pytest

from orchestrator.console import Console, Progress
from orchestrator.stacks.graph import all_stacks
from orchestrator.stacks.runner import Runner
from orchestrator.state import StateLayout
from orchestrator.topology import parse
from tests.doubles import InMemoryEngine


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def console(json_mode: bool = False) -> tuple[Console, list[str]]:
    err: list[str] = []
    return Console(out=lambda _t: None, err=err.append, json_mode=json_mode), err


def test_on_a_terminal_a_bar_with_total_rate_and_time_left_is_redrawn_in_place() -> None:
    con, err = console()
    clock = Clock()
    bar = Progress(con, "sync a -> b", unit="changes", tty=True, clock=clock)
    clock.now += 2
    bar.update(10, 40)
    assert err[-1].startswith("\r\x1b[K") and "\n" not in err[-1]
    assert "sync a -> b [######..................] 10/40 changes" in err[-1]
    assert "5.0/s" in err[-1] and "~6s left" in err[-1]
    clock.now += 0.01
    bar.update(11, 40)  # too soon: not redrawn
    assert "10/40" in err[-1]
    clock.now += 1
    bar.update(40, 40)
    assert "40/40" in err[-2] and err[-1] == "\n"  # the finished bar stays on its own line


def test_a_notice_clears_the_bar_and_draws_it_again_after() -> None:
    con, err = console()
    bar = con.progress("up dev", unit="stacks", tty=True)
    bar.update(1, 3)
    del err[:]
    con.info("[dev-dns] succeeded")
    assert err == ["\r\x1b[K", "[dev-dns] succeeded\n", err[2]]
    assert err[2].startswith("\r\x1b[K") and "1/3 stacks" in err[2]
    bar.close()
    del err[:]
    con.info("after")
    assert err == ["after\n"]  # a closed bar is not drawn again


def test_when_stderr_is_a_file_a_plain_line_at_each_tenth() -> None:
    con, err = console()
    bar = con.progress("restore -> b", tty=False)
    for done in range(0, 101):
        bar.update(done, 100)
    assert len(err) == 11 and all(line.endswith("\n") and "\r" not in line for line in err)
    assert err[0].startswith("restore -> b [") and "100/100" in err[-1]


def test_lines_false_is_silent_off_a_terminal() -> None:
    con, err = console()
    bar = con.progress("up dev", tty=False, lines=False)
    bar.update(1, 2)
    assert err == [] and not bar.live


def test_silent_under_json_and_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    con, err = console(json_mode=True)
    con.progress("sync", tty=True).update(5, 10)
    assert err == []
    monkeypatch.setenv("CI", "true")
    con, err = console()
    bar = con.progress("sync", tty=True)
    bar.update(5, 10)
    assert err == [] and not bar.live


def test_registry_sync_and_restore_draw_through_the_console_progress() -> None:
    from types import SimpleNamespace

    from orchestrator.cli.registry import progress_bar

    con, err = console()
    bar = progress_bar(SimpleNamespace(console=con), "sync a -> b")  # type: ignore[arg-type]
    assert isinstance(bar, Progress) and bar.console is con
    bar(0, 20)  # the registry's Progress callback: (done, total)
    bar(20, 20)
    assert "sync a -> b [" in err[0] and "20/20 changes" in "".join(err)
    quiet, err = console(json_mode=True)
    progress_bar(SimpleNamespace(console=quiet), "sync a -> b")(20, 20)  # type: ignore[arg-type]
    assert err == []


class Recorder:
    live = True

    def __init__(self) -> None:
        self.updates: list[tuple[int, int, str]] = []

        self.closed = 0

    def update(self, done: int, total: int | None = None, detail: str | None = None) -> None:
        self.updates.append((done, total or 0, detail or ""))

    def close(self) -> None:
        self.closed += 1


TOPOLOGY = {"domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1",
            "secondaries": ["eu-central-1"], "routing": "failover",
            "residency": ["eu-west-1", "eu-central-1"]}


def test_up_reports_stacks_done_of_the_total_and_the_running_stack(tmp_path) -> None:  # noqa: ANN001
    topology = parse(TOPOLOGY, env="dev", source="test")
    notices: list[str] = []
    recorder = Recorder()
    runner = Runner(InMemoryEngine(), topology, StateLayout(tmp_path), notify=notices.append, progress=recorder)
    report = runner.up(all_stacks(topology))
    assert report.ok
    finished = [(d, t) for d, t, detail in recorder.updates if re.search(r" (succeeded|skipped)$", detail)]
    assert finished == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert recorder.closed == 1
    # on a terminal the running stack's counts go to the bar, not to "so far" lines
    runner._last_progress.clear()
    runner._progress("dev-dns", {"create": 18})
    assert recorder.updates[-1] == (4, 4, "[dev-dns] create 18")
    assert not [n for n in notices if "so far" in n]
    recorder.live = False
    runner._last_progress.clear()
    runner._progress("dev-dns", {"create": 19})
    assert notices[-1] == "[dev-dns] create 19 so far"


def test_a_failed_stack_counts_as_finished_and_the_rest_are_not_run(tmp_path) -> None:  # noqa: ANN001
    topology = parse(TOPOLOGY, env="dev", source="test")
    engine = InMemoryEngine()
    engine.fail_on["dev-region-eu-west-1"] = "boom"
    recorder = Recorder()
    report = Runner(engine, topology, StateLayout(tmp_path), progress=recorder).up(all_stacks(topology))
    assert not report.ok
    finished = sorted(u for u in recorder.updates if not u[2].startswith("["))
    assert finished == [(1, 4, "dev-region-eu-central-1 succeeded"), (2, 4, "dev-region-eu-west-1 failed")] or \
        finished == [(1, 4, "dev-region-eu-west-1 failed"), (2, 4, "dev-region-eu-central-1 succeeded")]
    assert recorder.closed == 1  # the display ends although two stacks never ran


def test_work_without_a_total_yet_shows_requests_rate_and_time_then_the_bar_takes_over() -> None:
    con, err = console()
    clock = Clock()
    bar = Progress(con, "sync a -> b", unit="changes", tty=True, clock=clock)
    clock.now += 4
    bar.activity("reading", 1200)
    assert err[-1] == "\r\x1b[Ksync a -> b: reading: 1,200 requests  300/s  4s"
    clock.now += 1
    bar.update(10, 40)  # the total is known: the rate is that of the changes, from now
    clock.now += 2
    bar.update(20, 40)
    assert "20/40 changes" in err[-1] and "10.0/s" in err[-1]  # 20 in 2 s, not 20 in 7 s
    before = len(err)
    bar.activity("reading", 1500)  # a total exists: the reading line is not drawn again
    assert len(err) == before


def test_work_without_a_total_in_a_file_writes_a_line_every_few_seconds_and_nothing_under_json() -> None:
    con, err = console()
    clock = Clock()
    lines = Progress(con, "sync a -> b", tty=False, clock=clock)
    for _ in range(8):
        clock.now += 2.5
        lines.activity("reading", 100)
    assert len(err) == 20 // int(Progress.LINE_EVERY)  # 20 s: one line per LINE_EVERY (10 s)
    assert all(e.endswith("\n") and "reading: 100 requests" in e for e in err)
    quiet, err2 = console(json_mode=True)
    Progress(quiet, "sync a -> b", tty=True, clock=clock).activity("reading", 5)
    assert err2 == []
