"""The sync checkpoint as an append-only journal in parts (issue 22): bytes written grow with the
operations (not with their square), each backend upload is one bounded part, parts from two
machines merge, a torn last line costs only a replay."""

from __future__ import annotations

from pathlib import Path

from orchestrator.registry.checkpoint import (
    Checkpoint,
    part_prefix,
    parts_of,
    pull_checkpoint,
    push_checkpoint,
)
from orchestrator.state import LocalStore, StateLayout

SRC, DST = "eu-west-1", "eu-central-1"


def keys(n: int) -> list[str]:
    return [f"thing create dev-{i:07d} #{i:012x}" for i in range(n)]


def test_bytes_written_grow_with_the_operations_not_their_square(tmp_path: Path) -> None:
    path = tmp_path / "sync" / "dev-a-b.json"
    ops = keys(20_000)
    cp = Checkpoint(path, src_region="a", dst_region="b", flush_every=25)
    cp.bind(ops)
    for k in ops:
        cp.mark_done(k)
    cp.close()
    payload = sum(len(k) + 4 for k in ops)  # a key, quoted, with its separator
    on_disk = path.stat().st_size + sum(p.stat().st_size for p in parts_of(path))
    assert cp.bytes_written == on_disk  # appended, never rewritten
    assert on_disk < payload + 40 * (len(ops) // 25) + 4096  # one line of ~40 B of framing per flush
    # the rewrite-per-batch format wrote sum over flushes of every key so far: 800 x more here
    assert Checkpoint.saved(path)["done"] == sorted(ops)
    again = Checkpoint(path, src_region="a", dst_region="b")
    again.bind(ops)
    assert again.resumed and all(again.is_done(k) for k in ops[::997])


def test_each_backend_upload_is_one_bounded_part_and_a_second_machine_resumes(tmp_path: Path) -> None:
    backend = LocalStore(tmp_path / "backend" / ".orchestrate")
    state = StateLayout(tmp_path / "clone", backend)
    path = state.sync_checkpoint_path("dev", SRC, DST)
    uploads: list[int] = []

    def store(p: Path) -> None:
        uploads.append(p.stat().st_size)
        state.push(p)

    now = [1000.0]
    ops = keys(2_000)
    cp = Checkpoint(path, src_region=SRC, dst_region=DST, flush_every=25, clock=lambda: now[0], store=store,
                    store_every_s=30)
    cp.bind(ops)
    for i, k in enumerate(ops[:1_500]):
        if i % 100 == 0:
            now[0] += 31  # a store is due about every 100 operations
        cp.mark_done(k)
    # killed here (no close, no push): the backend holds the parts closed so far
    whole = sum(p.stat().st_size for p in parts_of(path))
    assert len(uploads) >= 20 and max(uploads) < whole / 10  # no upload carries the whole journal
    stored = state.documents(path.parent, part_prefix(path))
    assert len(stored) >= 10

    other = StateLayout(tmp_path / "second-clone", backend)
    path_b = other.sync_checkpoint_path("dev", SRC, DST)
    assert pull_checkpoint(other, path_b)
    resumed = Checkpoint(path_b, src_region=SRC, dst_region=DST, clock=lambda: now[0])
    resumed.bind(ops)
    done = [k for k in ops if resumed.is_done(k)]
    assert resumed.resumed and 1_400 <= len(done) <= 1_500 and done == ops[:len(done)]
    for k in ops:
        if not resumed.is_done(k):
            resumed.mark_done(k)
    resumed.complete()
    push_checkpoint(other, path_b)
    assert not state.documents(path.parent, part_prefix(path)) and backend.get(state.key(path)) is None


def test_a_part_the_backend_lacks_is_kept_and_merged(tmp_path: Path) -> None:
    backend = LocalStore(tmp_path / "backend" / ".orchestrate")
    state = StateLayout(tmp_path / "clone", backend)
    path = state.sync_checkpoint_path("dev", SRC, DST)
    ops = keys(10)
    first = Checkpoint(path, src_region=SRC, dst_region=DST, flush_every=1)
    first.bind(ops)
    first.mark_done(ops[0])
    first.close()
    push_checkpoint(state, path)  # stored: ops[0]
    later = Checkpoint(path, src_region=SRC, dst_region=DST, flush_every=1)
    later.bind(ops)
    later.mark_done(ops[1])  # a later run here, killed before its push
    assert pull_checkpoint(state, path)
    merged = Checkpoint(path, src_region=SRC, dst_region=DST)
    merged.bind(ops)
    assert [merged.is_done(k) for k in ops[:3]] == [True, True, False]


def test_a_torn_last_line_costs_a_replay_and_another_plan_drops_the_parts(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    ops = keys(4)
    cp = Checkpoint(path, src_region="a", dst_region="b", flush_every=1)
    cp.bind(ops)
    cp.mark_done(ops[0])
    cp.mark_done(ops[1])
    cp.close()
    (part,) = parts_of(path)
    part.write_bytes(part.read_bytes()[:-7])  # power loss in the middle of the last line
    torn = Checkpoint(path, src_region="a", dst_region="b")
    torn.bind(ops)
    assert torn.is_done(ops[0]) and not torn.is_done(ops[1])
    other = Checkpoint(path, src_region="a", dst_region="b", flush_every=1)
    other.bind(["thing create x #0"])
    assert other.dropped == 1 and not other.is_done(ops[0])
    other.mark_done("thing create x #0")
    other.close()
    assert Checkpoint.saved(path)["done"] == ["thing create x #0"]  # the old plan's part is gone
