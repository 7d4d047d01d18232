"""Where the orchestrator's own files go (`orchestrator/state.py` is their one owner)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.context import Context
from orchestrator.operations.lifecycle import Lifecycle
from orchestrator.state import StateLayout, atomic_write_json, atomic_write_text, read_json
from orchestrator.topology import RoutingMode
from tests.doubles import InMemoryEngine


def test_layout_pins_every_path(tmp_path: Path) -> None:
    s = StateLayout(tmp_path)
    root = tmp_path / ".orchestrate"
    assert s.root == root
    assert s.runs_dir == root / "runs"
    assert s.lifecycle_path("prod") == root / "lifecycle" / "prod.json"
    assert s.sync_record_path("prod") == root / "lifecycle" / "prod-syncs.json"
    checkpoint = s.sync_checkpoint_path("prod", "eu-west-1", "eu-central-1")
    assert checkpoint == root / "sync" / "prod-eu-west-1-eu-central-1.json"
    assert s.workspace_dir("prod-dns") == root / "workspaces" / "prod-dns"


def test_a_run_journal_lands_under_runs(run, project: Path) -> None:  # noqa: ANN001
    assert run("up", "--yes", "--region", "eu-west-1").exit_code == 0
    journals = list((project / ".orchestrate" / "runs").glob("dev-up-*.json"))
    assert len(journals) == 1
    assert json.loads(journals[0].read_text())["status"] == "succeeded"
    assert not (project / ".orchestrate" / ".orchestrate").exists()


def test_the_pulumi_engine_puts_workspaces_under_the_state_dir(tmp_path: Path) -> None:
    from orchestrator.engine.pulumi import PulumiEngine

    engine = PulumiEngine(project_dir=tmp_path, stacks_dir=tmp_path / "stacks", backend_url="file://x",
                          secrets_provider=None, endpoint_url=None, cli=Path("/bin/true"))
    assert engine.state.workspace_dir("dev-dns") == tmp_path / ".orchestrate" / "workspaces" / "dev-dns"


def test_lifecycle_runs_without_the_cli_and_stores_its_state_in_the_layout(project: Path) -> None:
    """A Context with an in-memory engine is all an operation needs: no click, no CliRunner."""
    ctx = Context(env="dev", project_dir=project, config_path=project / "stacks" / "dev.topology.yaml",
                  backend_url="file://unused", engine_factory=lambda _c: InMemoryEngine())
    report = Lifecycle(ctx).promote("eu-central-1", RoutingMode.FAILOVER, dry_run=True)
    assert report.steps[0].step == "preflight"
    # the dry run runs its preflight for real: nothing is up in this in-memory engine, so it says so
    assert report.steps[0].status == "failed" and "dev-region-eu-west-1 is not up" in report.steps[0].detail
    assert [s.status for s in report.steps[1:]] == ["planned"] * (len(report.steps) - 1)
    # a dry run records nothing
    assert not ctx.state.lifecycle_path("dev").exists()


def test_a_step_that_is_refused_or_interrupted_leaves_an_honest_record(project: Path) -> None:
    """An ARC safety-rule refusal (exit 4) or Ctrl-C inside a step must not leave the record "running"."""
    from orchestrator.errors import GuardRefused
    from orchestrator.operations.lifecycle import Step

    ctx = Context(env="dev", project_dir=project, config_path=project / "stacks" / "dev.topology.yaml",
                  backend_url="file://unused", engine_factory=lambda _c: InMemoryEngine())
    life = Lifecycle(ctx)
    steps = [Step("check-target", "x"), Step("routing-controls", "y"), Step("record-primary", "z")]

    def refuse() -> str:
        raise GuardRefused("ARC refused the change: at least 1 routing control must be On")

    def interrupt() -> str:
        raise KeyboardInterrupt

    for action, status, error in ((refuse, "refused", "ARC refused the change"),
                                  (interrupt, "interrupted", "KeyboardInterrupt")):
        saved = {"operation": "failover", "region": "eu-central-1", "status": "running", "done": []}
        actions = {"check-target": lambda: "up", "routing-controls": action, "record-primary": lambda: "no"}
        with pytest.raises((GuardRefused, KeyboardInterrupt)):
            life._steps("failover", "eu-central-1", steps, actions, saved, [])
        record = json.loads(ctx.state.lifecycle_path("dev").read_text())
        assert record["status"] == status and record["failed_step"] == "routing-controls"
        assert record["done"] == ["check-target"] and record["error"].startswith(error)


def test_atomic_writes_replace_whole_files_and_keep_a_mode(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert read_json(target) == {"a": [1, 2], "b": 1}
    assert read_json(tmp_path / "missing.json") is None
    text = tmp_path / "t.yaml"
    atomic_write_text(text, "x: 1\n", mode=0o640)
    assert text.read_text() == "x: 1\n" and (os.stat(text).st_mode & 0o777) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temp file left behind


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.json"
    atomic_write_json(target, {"v": 1})

    def crash(src: str, dst: str) -> None:  # the rename fails after the temp file was written and fsynced
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write_json(target, {"v": 2})
    monkeypatch.undo()
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_run_state_lives_beside_a_file_backend_and_the_project_dir_is_a_cache(run, project: Path) -> None:  # noqa: ANN001
    assert run("up", "--region", "eu-west-1", "--yes").exit_code == 0
    stored = list((project / ".pulumi-state" / ".orchestrate" / "runs").glob("dev-up-*.json"))
    cached = list((project / ".orchestrate" / "runs").glob("dev-up-*.json"))
    assert [p.name for p in stored] == [p.name for p in cached] and len(stored) == 1
    assert stored[0].read_bytes() == cached[0].read_bytes()


def test_store_for_maps_backends_to_a_prefix_next_to_pulumi_state(tmp_path: Path) -> None:
    from orchestrator.state import LocalStore, S3Store, store_for

    local = store_for(f"file://{tmp_path}/state")
    assert isinstance(local, LocalStore) and local.root == tmp_path / "state" / ".orchestrate"
    s3 = store_for("s3://bucket/teams/iot?region=eu-west-1&endpoint=127.0.0.1:9")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("bucket", "teams/iot/.orchestrate")
    assert store_for("https://api.pulumi.com") is None


def test_a_local_store_refuses_a_write_based_on_a_stale_read(tmp_path: Path) -> None:
    from orchestrator.errors import ExitCode, StateConflict
    from orchestrator.state import LocalStore

    store = LocalStore(tmp_path / "backend" / ".orchestrate")
    one, two = StateLayout(tmp_path / "one", store), StateLayout(tmp_path / "two", store)
    assert one.load(one.lifecycle_path("dev")) is None and two.load(two.lifecycle_path("dev")) is None
    one.save(one.lifecycle_path("dev"), {"v": 1})
    with pytest.raises(StateConflict) as info:
        two.save(two.lifecycle_path("dev"), {"v": 2})
    assert info.value.exit_code == ExitCode.LOCKED
    assert read_json(tmp_path / "one" / ".orchestrate" / "lifecycle" / "dev.json") == {"v": 1}
    assert not (tmp_path / "two" / ".orchestrate" / "lifecycle" / "dev.json").exists()
    assert two.load(two.lifecycle_path("dev")) == {"v": 1}
    two.save(two.lifecycle_path("dev"), {"v": 2})
    assert read_json(store.root / "lifecycle" / "dev.json") == {"v": 2}


def test_backend_display_drops_credentials_and_query(tmp_path: Path) -> None:
    from orchestrator.state import backend_display

    assert backend_display("s3://bucket/p?region=eu-west-1&profile=x") == "s3://bucket/p"
    assert backend_display("https://user:tok@api.example.com/x") == "https://api.example.com/x"
    assert backend_display(f"file://{tmp_path}") == f"file://{tmp_path}"


def test_a_checkpoint_left_by_a_killed_sync_survives_the_next_pull_and_merges(tmp_path: Path) -> None:
    """SIGKILL skips the push of the checkpoint: the cached copy is newer than the store's."""
    from orchestrator.registry.checkpoint import Checkpoint
    from orchestrator.state import LocalStore

    state = StateLayout(tmp_path / "clone", LocalStore(tmp_path / "backend" / ".orchestrate"))
    path = state.sync_checkpoint_path("dev", "eu-west-1", "eu-central-1")

    def doc(*done: str) -> dict[str, object]:
        return {"format": 1, "src_region": "eu-west-1", "dst_region": "eu-central-1", "done": list(done)}

    atomic_write_json(path, doc("a", "b"))  # the killed run's, never stored
    assert state.pull(path, merge=Checkpoint.merge_files) and read_json(path) == doc("a", "b")
    assert not state.pull(path) and not path.exists()  # without merge: the store is the truth

    atomic_write_json(path, doc("a", "b"))
    state.push(path)  # stored: a, b
    atomic_write_json(path, doc("c"))  # a later run on this machine, killed before its push
    assert state.pull(path, merge=Checkpoint.merge_files)
    assert read_json(path)["done"] == ["a", "b", "c"]
    other = json.dumps(doc("x") | {"dst_region": "eu-north-1"}).encode()
    assert Checkpoint.merge_files(other, json.dumps(doc("a")).encode()) == json.dumps(doc("a")).encode()


def test_a_running_sync_stores_its_checkpoint_in_the_backend_every_so_often(tmp_path: Path) -> None:
    """SIGKILL skips every `finally`: the backend still holds a checkpoint at most `store_every_s`
    old, which a second machine resumes from; a store that fails does not stop the sync."""
    from orchestrator.errors import StateConflict
    from orchestrator.registry.checkpoint import Checkpoint, pull_checkpoint
    from orchestrator.state import LocalStore

    backend = LocalStore(tmp_path / "backend" / ".orchestrate")
    state = StateLayout(tmp_path / "clone", backend)
    path = state.sync_checkpoint_path("dev", "eu-west-1", "eu-central-1")
    now = [1000.0]
    cp = Checkpoint(path, src_region="eu-west-1", dst_region="eu-central-1", flush_every=1,
                    clock=lambda: now[0], store=state.push, store_every_s=30)
    cp.bind(["a", "b", "c"])
    cp.mark_done("a")
    assert path.exists() and backend.get(state.key(path)) is None  # flushed, not yet due for the backend
    now[0] += 31
    cp.mark_done("b")  # due: stored
    cp.mark_done("c")  # flushed locally only (the next store is 30 s away)
    # ... and the process is killed here: the second machine sees a and b
    other = StateLayout(tmp_path / "second-clone", backend)
    assert pull_checkpoint(other, other.sync_checkpoint_path("dev", "eu-west-1", "eu-central-1"))
    resumed = Checkpoint(other.sync_checkpoint_path("dev", "eu-west-1", "eu-central-1"),
                         src_region="eu-west-1", dst_region="eu-central-1", clock=lambda: now[0])
    resumed.bind(["a", "b", "c"])
    assert resumed.resumed and [resumed.is_done(k) for k in "abc"] == [True, True, False]

    def refused(_path: Path) -> None:
        raise StateConflict("sync/dev-eu-west-1-eu-central-1.json", "the backend")

    flaky = Checkpoint(path, src_region="eu-west-1", dst_region="eu-central-1", flush_every=1,
                       clock=lambda: now[0], store=refused, store_every_s=0)
    flaky.mark_done("d")
    # the mark stands (journalled locally; a run's own marks are not held in memory, issue 22)
    assert flaky.store_errors == 1 and len(flaky) == 4 and "d" in Checkpoint.saved(path)["done"]


def test_the_vault_and_the_signing_key_come_from_one_read_of_the_home_stack(project: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`registry backup` needs both from the home region stack's outputs: one Pulumi call, not two."""
    from orchestrator.engine.types import OutputValue
    from orchestrator.operations.backups import backup_destination, home_outputs, signing_key_spec
    from orchestrator.stacks.graph import region_stack
    from programs.contract import BACKUP_OUTPUT, SIGNING_KEY_OUTPUT

    monkeypatch.delenv("ORCHESTRATE_BACKUP_DEST", raising=False)
    monkeypatch.delenv("ORCHESTRATE_BACKUP_SIGNING_KEY", raising=False)
    engine = InMemoryEngine()
    ctx = Context(env="dev", project_dir=project, config_path=project / "stacks" / "dev.topology.yaml",
                  backend_url="file://unused", engine_factory=lambda _c: engine)
    reads: list[str] = []
    monkeypatch.setattr(engine, "outputs", lambda stack: reads.append(stack) or {
        BACKUP_OUTPUT: OutputValue("iot-dev-backups-x"), SIGNING_KEY_OUTPUT: OutputValue("awskms:arn:k")})
    home = home_outputs(ctx)
    assert backup_destination(ctx, home) == "s3://iot-dev-backups-x/registry"
    assert signing_key_spec(ctx, None, home) == "awskms:arn:k"
    assert reads == [region_stack(ctx.topology(), ctx.topology().home_region).name]
    assert signing_key_spec(ctx, "awskms:given", home) == "awskms:given"  # a named key reads nothing
    assert len(reads) == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_is_refused_while_renewed_and_taken_over_once_it_expires(tmp_path: Path) -> None:
    from orchestrator.errors import LeaseHeld, StateConflict
    from orchestrator.state import Lease, LocalStore

    store, clock = LocalStore(tmp_path / "backend"), _Clock()

    def lease(holder: str) -> Lease:
        return Lease(store, "sync/dev-a-b.lock.json", "registry sync a -> b", ttl_s=300, renew_every_s=60,
                     clock=clock, holder=holder)

    one = lease("one@host-1 (pid 1)").acquire()
    clock.now += 290
    one.renew()  # a long run renews before the TTL runs out
    clock.now += 200  # 490 s after it started, 200 s after its renewal: alive
    with pytest.raises(LeaseHeld, match=r"held by one@host-1 \(pid 1\), 8 min old .*renewed 200 s ago") as held:
        lease("two@host-2 (pid 2)").acquire()
    assert held.value.exit_code == 3 and held.value.holder == "one@host-1 (pid 1)"
    clock.now += 101  # one died: no renewal for longer than the TTL
    two = lease("two@host-2 (pid 2)").acquire()
    assert two.taken_over == "one@host-1 (pid 1)"
    with pytest.raises(StateConflict):  # one wakes up: its renewal finds the lease replaced
        one.renew()
    assert one.lost
    with pytest.raises(StateConflict):
        one.check()
    one.release()  # a lost lease is not removed: it is two's now
    assert store.get("sync/dev-a-b.lock.json") is not None
    two.check()
    two.release()
    assert store.get("sync/dev-a-b.lock.json") is None


def test_a_held_lease_is_renewed_by_its_thread_and_removed_on_exit(tmp_path: Path) -> None:
    import threading

    from orchestrator.state import Lease, LocalStore

    store = LocalStore(tmp_path / "backend")
    renewed = threading.Event()
    lease = Lease(store, "sync/x.lock.json", "registry sync", renew_every_s=0.01)
    real_renew = lease.renew

    def renew() -> None:
        real_renew()
        renewed.set()

    lease.renew = renew  # type: ignore[method-assign]
    with lease:
        first = store.get("sync/x.lock.json")
        assert first is not None and b'"holder"' in first.data
        assert renewed.wait(30), "the lease was never renewed"
        assert store.get("sync/x.lock.json").version != first.version  # type: ignore[union-attr]
    assert store.get("sync/x.lock.json") is None
