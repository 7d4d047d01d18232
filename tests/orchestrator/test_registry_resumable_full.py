"""Resumable `--full` reads (orchestrator/registry/readjournal.py): a full pass killed midway goes
on from what it had read, and still ends with the regions verified equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.registry.readjournal import READS_TTL_S, ReadJournal, read_parts

ROOT = Path(__file__).resolve().parents[2]
SRC, DST = "eu-west-1", "eu-central-1"

# One process: the fake world (bench/fake_iot.py, AWS paging, quotas x 1000) seeded alike every time,
# a first sync (not counted), then a --full pass; with KILL_AFTER > 0 the process SIGKILLs itself when
# the source has answered that many list_thing_principals calls of the full pass.
SCRIPT = r'''
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench.fake_iot import FakeIot
from orchestrator.registry import QuotaTable, SyncOptions, sync_clients

root, n, state, kill_after = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
world = FakeIot(scale=1000)
world.seed("eu-west-1", n)
base = dict(quotas=QuotaTable().scaled(1000), concurrency=4, shadows=False, stream_chunk=50)
first = sync_clients(world.client("eu-west-1"), world.client("eu-central-1"),
                     SyncOptions(**base, checkpoint_path=state / "first" / "cp.json"))
assert first.ok, first.errors


class Killing:
    def __init__(self, client):
        self._client, self.calls = client, 0

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name != "list_thing_principals" or not kill_after:
            return attr

        def call(**kwargs):
            self.calls += 1
            if self.calls > kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return attr(**kwargs)
        return call


report = sync_clients(Killing(world.client("eu-west-1")), world.client("eu-central-1"),
                      SyncOptions(**base, full=True, checkpoint_path=state / "full" / "cp.json"))
print(json.dumps({"ok": report.ok, "verified": report.verification is None or report.verification.ok,
                  "list_thing_principals": report.calls_by_api.get("list_thing_principals", 0),
                  "things_checked": report.things_checked, "errors": len(report.errors)}))
'''


def _run(tmp_path: Path, n: int, state: Path, kill_after: int) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "full_pass.py"
    script.write_text(SCRIPT, encoding="utf-8")
    return subprocess.run([sys.executable, str(script), str(ROOT), str(n), str(state), str(kill_after)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow
def test_a_full_pass_killed_midway_resumes_with_fewer_reads_than_a_restart_and_verifies_equal(tmp_path: Path) -> None:
    n = 400
    restart = _run(tmp_path, n, tmp_path / "restart", 0)
    assert restart.returncode == 0, restart.stderr
    fresh = json.loads(restart.stdout.strip().splitlines()[-1])
    assert fresh["ok"] and fresh["verified"] and fresh["things_checked"] == n
    assert fresh["list_thing_principals"] >= 2 * n  # every thing, in both regions

    state = tmp_path / "resumed"
    killed = _run(tmp_path, n, state, 220)  # SIGKILL after 220 of the source's 400 reads
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    checkpoint = state / "full" / "cp.json"
    lines = [line for part in read_parts(checkpoint) for line in part.read_text(encoding="utf-8").splitlines()]
    assert lines, "the killed pass journalled what it had read"

    resumed = _run(tmp_path, n, state, 0)
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert after["ok"] and after["verified"] and after["errors"] == 0
    assert after["things_checked"] == n  # every thing was looked at: read now or taken from the journal
    # what the killed pass had journalled is not read again (at least a chunk of 50 per region)
    assert after["list_thing_principals"] <= fresh["list_thing_principals"] - 100
    # a clean, verified pass leaves only a reset line: the next --full pass reads everything
    left = [line for part in read_parts(checkpoint) for line in part.read_text(encoding="utf-8").splitlines()]
    assert len(left) == 1 and json.loads(left[0])["reset"] is True


def _journal(path: Path, now: list[float], *, dst: str = DST, stored: list[Path] | None = None) -> ReadJournal:
    return ReadJournal(path, src_region=SRC, dst_region=dst, clock=lambda: now[0], store_every_s=10,
                       store=stored.append if stored is not None else None)


def test_a_journalled_thing_is_trusted_only_at_the_same_version_and_within_the_window(tmp_path: Path) -> None:
    path, now = tmp_path / "cp.json", [1_000_000.0]
    _journal(path, now).record(SRC, {"a": (3, ["c1", "c2"]), "b": (1, []), "nov": (None, ["c9"])})
    j = _journal(path, now)
    assert j.known(SRC, "a", 3) == ("c1", "c2")
    assert j.known(SRC, "b", 1) == ()  # read, and nothing attached: not read again either
    assert j.known(SRC, "a", 4) is None  # the thing changed since: read it again
    assert j.known(SRC, "nov", None) is None and j.known(DST, "a", 3) is None
    assert j.reused == 2
    now[0] += READS_TTL_S + 1
    assert _journal(path, now).known(SRC, "a", 3) is None  # older than the window


def test_lines_of_another_region_pair_torn_lines_and_lines_before_a_reset_are_ignored(tmp_path: Path) -> None:
    path, now = tmp_path / "cp.json", [1_000_000.0]
    _journal(path, now, dst="us-east-1").record(SRC, {"x": (1, ["c"])})
    _journal(path, now).record(SRC, {"a": (1, ["c1"])})
    with open(read_parts(path)[-1], "a", encoding="utf-8") as f:
        f.write('{"f":1,"src":"eu-west-1","dst":"eu-central-1","at":1000000.0,"r":"eu-west-1","t":{"b":[1,')
    j = _journal(path, now)
    assert j.known(SRC, "x", 1) is None and j.known(SRC, "a", 1) == ("c1",) and j.known(SRC, "b", 1) is None
    stale = {p.name: p.read_bytes() for p in read_parts(path)}
    now[0] += 5
    j.complete()
    assert len(read_parts(path)) == 1
    for name, data in stale.items():  # parts another copy (the backend, another machine) still holds
        (path.parent / name).write_bytes(data)
    now[0] += 5
    assert _journal(path, now).known(SRC, "a", 1) is None  # written before the reset
    _journal(path, now).record(SRC, {"a": (2, ["c3"])})
    assert _journal(path, now).known(SRC, "a", 2) == ("c3",)  # written after it


def test_parts_are_stored_once_each_so_uploads_grow_with_the_reads_not_their_square(tmp_path: Path) -> None:
    path, now, stored = tmp_path / "cp.json", [1_000_000.0], []
    j = _journal(path, now, stored=stored)
    for i in range(30):
        j.record(SRC, {f"t{i}": (1, [f"c{i}"])})
        now[0] += 4  # a part is closed and stored every 10 s
    j.flush_store()
    assert len(stored) == len(set(stored)) == len(read_parts(path)) >= 10
    assert sum(p.stat().st_size for p in stored) == sum(p.stat().st_size for p in read_parts(path))
    assert all(_journal(path, now).known(SRC, f"t{i}", 1) == (f"c{i}",) for i in range(30))
