"""`status` shows the locks held and the runs in progress (item 8 of issue 20): what another
machine may be doing right now, read from the Pulumi backend and the run state backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import Result

from orchestrator.stacks.journal import Journal
from orchestrator.state import StateLayout, store_for
from tests.doubles import InMemoryEngine
from tests.orchestrator.conftest import multi_region


def _state(project: Path) -> StateLayout:
    return StateLayout(project, store_for(f"file://{project / '.pulumi-state'}"))


@pytest.mark.slow
def test_status_lists_locks_and_unfinished_runs(project: Path, run: Callable[..., Result],
                                                engine: InMemoryEngine) -> None:
    multi_region(project, "dev", ["eu-central-1"])
    assert run("up", "--all", "--yes").exit_code == 0
    quiet = run("status")
    assert quiet.exit_code == 0, quiet.output
    assert "locks held: none" in quiet.stdout and "runs in progress (or stopped midway): none" in quiet.stdout

    since = (datetime.now(timezone.utc) - timedelta(minutes=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    engine.locked["dev-dns"], engine.lock_since["dev-dns"] = "runner@fv-az1 (pid 77)", since
    state = _state(project)
    journal = Journal.start(state, "dev", "up", [["dev-dns"]])  # another machine's up, not finished
    state.save(state.lifecycle_path("dev"), {"operation": "failover", "region": "eu-central-1",
                                             "from": "eu-west-1", "status": "failed", "failed_step": "dns",
                                             "done": ["check-target"], "started": "2026-12-02T20:00:00Z"})
    state.save(state.sync_checkpoint_path("dev", "eu-west-1", "eu-central-1"),
               {"src_region": "eu-west-1", "dst_region": "eu-central-1", "done": ["a", "b"], "written_at": 0})

    text = run("status")
    assert text.exit_code == 0, text.output
    out = text.stdout
    assert "locks held: 1" in out and "dev-dns" in out and "locked by runner@fv-az1 (pid 77), 7 min old" in out, out
    assert f"up {journal.run_id}: running" in out, out
    assert "failover eu-central-1: failed" in out and "from eu-west-1, at step dns" in out, out
    assert "registry sync eu-west-1 -> eu-central-1: checkpoint left" in out and "2 operations done" in out, out

    doc = json.loads(run("--json", "status").stdout)
    assert [lk["stack"] for lk in doc["locks"]] == ["dev-dns"]
    assert doc["locks"][0]["holder"] == "runner@fv-az1 (pid 77)" and 400 <= doc["locks"][0]["age_seconds"] <= 500
    kinds = sorted(r["kind"] for r in doc["runs"])
    assert kinds == ["failover", "registry sync", "up"], doc["runs"]
    journal.finish("succeeded")
    left = sorted(r["kind"] for r in json.loads(run("--json", "status").stdout)["runs"])
    assert left == ["failover", "registry sync"], left  # a finished journal is history


def test_status_shows_who_runs_a_registry_sync_now(project: Path, run: Callable[..., Result]) -> None:
    """A sync's lease in the run state: a live one is a sync running on another machine (holder and
    start), an expired one a sync that died."""
    import time

    from orchestrator.state import Lease

    multi_region(project, "dev", ["eu-central-1"])
    state = _state(project)
    lease = Lease(state.store, state.key(state.sync_lock_path("dev", "eu-west-1", "eu-central-1")),
                  "registry sync eu-west-1 -> eu-central-1 (env dev)", holder="ci@runner-3 (pid 12)").acquire()
    out = run("status").stdout
    assert "registry sync eu-west-1 -> eu-central-1: running (lease renewed" in out, out
    assert "on ci@runner-3 (pid 12), started " in out, out
    doc = json.loads(run("--json", "status").stdout)
    assert [(r["kind"], r["run"], r["host"]) for r in doc["runs"]] == [
        ("registry sync", "eu-west-1 -> eu-central-1", "ci@runner-3 (pid 12)")]
    stale = Lease(state.store, state.key(state.sync_lock_path("dev", "eu-west-1", "eu-central-2")),
                  "registry sync eu-west-1 -> eu-central-2 (env dev)", holder="x@y (pid 1)", ttl_s=300,
                  clock=lambda: time.time() - 3600).acquire()
    assert "eu-west-1 -> eu-central-2: lease expired" in run("status").stdout
    lease.release()
    stale.release()
    assert "runs in progress (or stopped midway): none" in run("status").stdout


@pytest.mark.slow
def test_status_shows_the_last_verification_per_secondary_and_an_unfinished_sync_mark(
        project: Path, run: Callable[..., Result], engine: InMemoryEngine) -> None:
    from orchestrator.operations.verification import record_verification
    from orchestrator.registry.sync.run import VersionRecord

    multi_region(project, "dev", ["eu-central-1", "eu-west-2"])
    assert run("up", "--all", "--yes").exit_code == 0
    never = json.loads(run("--json", "status").stdout)["verifications"]
    assert [(v["to"], v["verified"]) for v in never] == [("eu-central-1", None), ("eu-west-2", None)]
    assert "eu-west-1 -> eu-central-1: never verified" in run("status").stdout

    state = _state(project)
    record_verification(state, "dev", "eu-west-1", "eu-central-1", source="registry verify", ok=False,
                        differences=3, by_kind={"thing_principals": 3, "things": 0})
    record_verification(state, "dev", "eu-west-1", "eu-west-2", source="registry sync", ok=True, differences=0,
                        by_kind={})
    versions = state.sync_versions_path("dev", "eu-west-1", "eu-central-1")
    VersionRecord.mark(versions, "eu-west-1", "eu-central-1")  # a sync killed after it started writing
    state.push(versions)

    doc = json.loads(run("--json", "status").stdout)
    by_region = {v["to"]: v["verified"] for v in doc["verifications"]}
    assert by_region["eu-central-1"]["ok"] is False and by_region["eu-central-1"]["differences"] == 3
    assert by_region["eu-central-1"]["by_kind"] == {"thing_principals": 3}
    assert by_region["eu-west-2"] == {**by_region["eu-west-2"], "ok": True, "source": "registry sync"}
    runs = [r for r in doc["runs"] if r["kind"] == "registry sync"]
    assert len(runs) == 1 and "not finished or not verified" in runs[0]["status"]
    out = run("status").stdout
    assert "eu-west-1 -> eu-central-1: DIFFERENT (3 differences) by registry verify" in out, out
    assert "eu-west-1 -> eu-west-2: parity by registry sync" in out, out
