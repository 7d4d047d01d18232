"""A killed `up` and two concurrent `up`s, through the real engine and its file-backend locks.

One resource's create is held at a barrier (FAKE_AWS_HOLD_ON / FAKE_AWS_HOLD_UNTIL: the stand-in
provider waits until a file exists) and the test waits, bounded, until the provider log shows that
create began: the update then certainly holds the stack's lock, and keeps holding it until the test
creates the file (or kills it). No sleep decides the outcome, so the tier can run under pytest-xdist
on a loaded machine.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
from pathlib import Path

from tests.engine.helpers import OrchestrateProject, dev_topology

STACK = "dev-region-eu-west-1"
SLOW = "lake-versioning"  # created after the bucket, before the domain configuration


def _lock_files(project: OrchestrateProject) -> list[str]:
    locks = project.state / ".pulumi" / "locks"
    return sorted(p.name for p in locks.rglob("*.json")) if locks.exists() else []


def _status(project: OrchestrateProject) -> dict[str, dict]:
    # backups in a local directory: the vault the stack names exists only in the stand-in's state
    backups = {"ORCHESTRATE_BACKUP_DEST": str(project.base / "backups")}
    return {s["name"]: s for s in project.json("status", env=backups)["stacks"]}


def _held(project: OrchestrateProject) -> tuple[dict[str, str], Path]:
    """The environment that holds SLOW's create until the returned file exists."""
    barrier = project.base / f"release-{SLOW}"
    return {"FAKE_AWS_HOLD_ON": SLOW, "FAKE_AWS_HOLD_UNTIL": str(barrier)}, barrier


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def test_killed_up_is_locked_then_recovered_without_duplicates(make_project) -> None:
    project: OrchestrateProject = make_project(dev_topology())
    held, barrier = _held(project)  # never released: the update is killed while it waits
    proc = project.start("up", "--yes", "--region", "eu-west-1", env=held, name="killed-up")
    try:
        project.wait_for_event("create-begin", SLOW, proc=proc)
    finally:
        _kill_group(proc)  # orchestrate, the pulumi CLI and the provider plugins, all at once
    assert proc.returncode == -signal.SIGKILL, project.output_of("killed-up")
    assert not barrier.exists()
    assert _lock_files(project), "the killed update should have left its lock"

    # the next up is refused as locked (exit 3) and says how to get out. (About 1 kill in 10 lands
    # between the file backend's checkpoint write and its .attrs sidecar; the engine repairs the
    # torn sidecar first, see test_engine_state.py, and the answer is the same.)
    again = project.run("up", "--yes", "--region", "eu-west-1", expect=3)
    assert "locked" in again.stdout + again.stderr
    assert f"orchestrate recover {STACK}" in again.stdout + again.stderr
    # ...naming the holder and the lock's age, from what the CLI says ("created by u@h (pid N) at T")
    holder = re.search(r"held by (\S+@\S+ \(pid \d+\)), (\d+ (?:s|min)) old \(since (\S+)\)",
                       again.stdout + again.stderr)
    assert holder, again.stdout + again.stderr
    # status shows the interrupted create
    before = _status(project)[STACK]
    assert before["pending_operations"] >= 1, before

    # the lock's process is gone (this host, its pid no longer runs): recover needs no --force
    recovered = project.json("recover", STACK, "--yes")
    assert recovered["pending_left"] == 0 and recovered["pending_cleared"] >= 1, recovered
    assert recovered["lock"]["holder"] == holder.group(1) and recovered["lock"]["since"] == holder.group(3)
    assert _lock_files(project) == []
    after = _status(project)[STACK]
    assert after["pending_operations"] == 0
    assert project.export(STACK)["deployment"].get("pending_operations") in (None, [])

    # up completes; nothing exists twice (the fake account refuses a second bucket, stream, ...)
    up = project.json("up", "--yes", "--region", "eu-west-1")
    assert up["ok"] is True, up
    urns = collections.Counter(r["urn"] for r in project.export(STACK)["deployment"]["resources"])
    assert [u for u, n in urns.items() if n > 1] == []
    assert any(u.endswith(f"::iot-dev-eu-west-1-{SLOW}") for u in urns)


def test_second_concurrent_up_exits_3_and_the_first_completes(make_project) -> None:
    project: OrchestrateProject = make_project(dev_topology())
    held, barrier = _held(project)  # the first up holds the lock until the barrier file exists
    first = project.start("up", "--yes", "--region", "eu-west-1", env=held, name="first-up")
    try:
        project.wait_for_event("create-begin", SLOW, proc=first)

        second = project.run("up", "--yes", "--region", "eu-west-1", expect=3)

        assert first.poll() is None, "the first update should still be running (held at the barrier)"
        assert "locked" in second.stdout + second.stderr
        assert "dev-dns" in second.stdout and "not run" in second.stdout
        assert "held by " in second.stdout + second.stderr and "(pid " in second.stdout + second.stderr

        # the lock is alive: recover shows who holds it and refuses (exit 4), touching nothing
        refused = project.run("recover", STACK, "--yes", expect=4)
        assert "may still be running" in refused.stderr and "--force" in refused.stderr
        assert re.search(r"locked by \S+@\S+ \(pid \d+\), \d+ (?:s|min) old \(since ", refused.stderr), refused.stderr
        assert _lock_files(project), "the refused recover cleared the lock"
        assert first.poll() is None, "the first update should still be running (held at the barrier)"

        barrier.touch()  # release: the first up creates SLOW and completes
        assert first.wait(timeout=300) == 0, project.output_of("first-up")
    finally:
        if first.poll() is None:
            _kill_group(first)
    assert _lock_files(project) == []
    status = _status(project)
    assert status[STACK]["deployed"] and status["dev-dns"]["deployed"]
    assert status[STACK]["pending_operations"] == 0
