"""Issue 22, figures at 1M things: `bench.registry_scale --dst seeded` measures the `--full` and
unchanged passes without a first sync before them, from a destination `FakeIot.seed_synced` builds
as a first sync would have left it. These tests hold that claim: at 2,000 things the seeded
destination equals, field by field, the one a real first sync (`sync_clients`) leaves; and a
`--full` pass over it writes nothing and verifies equal, as it does after a real first sync."""

from __future__ import annotations

from typing import Any

import pytest

from bench.fake_iot import FakeIot, FakeRegion
from orchestrator.registry import QuotaTable, SyncOptions, sync_clients

SRC, DST = "eu-west-1", "eu-central-1"
N = 2000
SCALE = 1000.0  # quotas x 1000: the floor of a 2,000-thing first sync is 0.2 s


def _contents(r: FakeRegion) -> dict[str, Any]:
    """Everything a region holds that a caller can read (not its lock, stamp or listing caches)."""
    return {"things": r.things, "types": r.types, "groups": r.groups, "members": r.members, "certs": r.certs,
            "principals": r.principals, "principal_things": r.principal_things, "policies": r.policies,
            "targets": r.targets}


def _options(**kw: Any) -> SyncOptions:
    return SyncOptions(quotas=QuotaTable().scaled(SCALE), concurrency=4, shadows=False, **kw)


@pytest.fixture(scope="module")
def synced() -> FakeIot:
    world = FakeIot(scale=SCALE)
    world.seed(SRC, N)
    report = sync_clients(world.client(SRC), world.client(DST), _options())
    assert report.ok and report.write_calls > N, report.errors
    return world


@pytest.fixture()
def seeded() -> FakeIot:
    world = FakeIot(scale=SCALE)
    world.seed(SRC, N)
    world.seed_synced(SRC, DST)
    return world


def test_a_seeded_destination_holds_what_a_first_sync_leaves(synced: FakeIot, seeded: FakeIot) -> None:
    got, want = _contents(seeded.region(DST)), _contents(synced.region(DST))
    for key in want:
        assert got[key] == want[key], key
    # the comparison is not vacuous: 2,000 things, their certificates and attachments, in DST's ARNs
    assert len(want["things"]) == len(want["certs"]) == len(want["principals"]) == N
    assert all(a.startswith(f"arn:aws:iot:{DST}:") for arns in want["principals"].values() for a in arns)
    assert len(want["targets"]["device"]) == N and len(want["targets"]["telemetry"]) == N // 4


def test_the_comparison_sees_one_missing_attachment(synced: FakeIot, seeded: FakeIot) -> None:
    r = seeded.region(DST)
    arn = next(iter(r.targets["telemetry"]))
    del r.targets["telemetry"][arn]
    assert _contents(r)["targets"] != _contents(synced.region(DST))["targets"]


def test_a_full_pass_over_a_seeded_destination_writes_nothing_and_verifies(seeded: FakeIot) -> None:
    report = sync_clients(seeded.client(SRC), seeded.client(DST), _options(full=True))
    assert report.ok and report.write_calls == 0, (report.errors, report.write_calls)
    assert report.verification is None or report.verification.ok
    # it read every thing's principals in both regions, as `registry sync --full` does
    assert report.calls_by_api.get("list_thing_principals", 0) >= 2 * N


def test_seeding_a_destination_that_is_not_empty_is_refused(seeded: FakeIot) -> None:
    with pytest.raises(ValueError, match="not empty"):
        seeded.seed_synced(SRC, DST)


def test_the_seeded_bench_carries_the_version_record_from_full_to_unchanged(tmp_path: Any) -> None:
    # each pass seeds its own world (in the bench: its own process); only the run-state directory
    # is shared, so the unchanged pass trusts the record --full wrote and reads no principals
    from bench.registry_scale import run_size

    n = 1000
    (full,) = run_size(n, SCALE, 4, 0, seeded=True, only="--full", state_dir=tmp_path)
    (unchanged,) = run_size(n, SCALE, 4, 0, seeded=True, only="unchanged", state_dir=tmp_path)
    assert full.ok and unchanged.ok
    assert full.calls >= 2 * n and full.write_calls == 0
    assert unchanged.calls < n // 10, unchanged.calls  # listings only (pages of 250)


def test_the_seeded_bench_runs_no_first_sync() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "bench.registry_scale", "--dst", "seeded", "--passes", "first",
                           "--sizes", "10"], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--dst seeded runs --full and unchanged" in proc.stderr
