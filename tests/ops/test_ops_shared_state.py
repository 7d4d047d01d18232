"""Run state beside the Pulumi state: two clones of the project against one S3 backend (moto).

Journals, the lifecycle state and registry sync checkpoints live under `.orchestrate/` in the
state bucket, next to Pulumi's `.pulumi/`; each clone's `.orchestrate/` is only a cache. The stacks
themselves run in one in-memory engine shared by both clones (what one Pulumi backend is to them).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orchestrator.aws import AwsContext, client
from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.errors import StateConflict
from orchestrator.state import S3Store, StateLayout, store_for
from tests.doubles import InMemoryEngine
from tests.ops.conftest import DST, SRC
from tests.ops.provider_sim import ProviderSimulation
from tests.ops.registry_world import listing, seed

REPO = Path(__file__).resolve().parents[2]
BUCKET = "team-pulumi-state"
BACKEND = f"s3://{BUCKET}/iot?region=us-east-1"


def clone(base: Path, name: str) -> Path:
    root = base / name
    (root / "stacks").mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(REPO / "stacks" / "dev.topology.yaml", root / "stacks" / "dev.topology.yaml")
    return root


@pytest.fixture
def bucket(ctx: AwsContext) -> Any:
    s3 = client(ctx, "s3", "us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture
def engine(ctx: AwsContext) -> InMemoryEngine:
    e = InMemoryEngine()
    e.after_up.append(ProviderSimulation(ctx))
    return e


Run = Callable[..., Result]


@pytest.fixture
def clones(tmp_path: Path, engine: InMemoryEngine, endpoint: str, bucket: Any,
           monkeypatch: pytest.MonkeyPatch) -> tuple[Run, Run, Path, Path]:
    monkeypatch.delenv("ORCHESTRATE_ENV", raising=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", BACKEND)
    a, b = clone(tmp_path, "a"), clone(tmp_path, "b")

    def runner(root: Path) -> Run:
        def invoke(*args: str) -> Result:
            monkeypatch.chdir(root)
            extra = ["--sync-rate", "500"] if args and args[0] in {"promote-secondary", "failover", "failback"} \
                else []
            extra += ["--yes"] if args and args[0] in {"up", "destroy", "promote-secondary", "failover", "failback"} \
                else []
            return CliRunner().invoke(cli, [*args, *extra, "--endpoint-url", endpoint],
                                      obj=Deps(engine_factory=lambda app: engine), catch_exceptions=False)

        return invoke

    return runner(a), runner(b), a, b


def stored_keys(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_up_resume_continues_on_a_second_clone(clones, engine: InMemoryEngine, bucket: Any) -> None:  # noqa: ANN001
    run_a, run_b, a, b = clones
    engine.fail_on["dev-dns"] = "Throttling: rate exceeded"
    first = run_a("up", "--all")
    assert first.exit_code == 1, first.output
    journals = [k for k in stored_keys(bucket) if k.startswith("iot/.orchestrate/runs/dev-up-")]
    assert len(journals) == 1, stored_keys(bucket)  # beside Pulumi's state, not only on clone a
    del engine.fail_on["dev-dns"]
    engine.calls.clear()
    second = run_b("up", "--all", "--resume")
    assert second.exit_code == 0, second.output
    assert "resuming run" in second.stderr, second.stderr
    assert engine.ops("up") == [("up", "dev-dns")]  # the region stack clone a applied is not redone
    assert not (b / ".orchestrate" / "lifecycle").exists()
    cached = list((b / ".orchestrate" / "runs").glob("dev-up-*.json"))
    assert len(cached) == 2  # the journal it resumed from and its own, copied into the cache


def test_failback_without_to_works_from_a_second_clone(clones, ctx: AwsContext) -> None:  # noqa: ANN001
    run_a, run_b, a, b = clones
    from orchestrator.aws import client as make_client

    assert run_a("up", "--region", SRC).exit_code == 0
    seed(make_client(ctx, "iot", SRC, own_retries=True), n_things=3, group_policy=False)
    assert run_a("promote-secondary", "--region", DST).exit_code == 0
    result = run_a("failover", "--to", DST)
    assert result.exit_code == 0, result.output
    # the topology change reaches clone b through git; the failover record through the backend
    shutil.copy(a / "stacks" / "dev.topology.yaml", b / "stacks" / "dev.topology.yaml")
    assert not (b / ".orchestrate").exists()
    back = run_b("failback")
    assert back.exit_code == 0, back.output + back.stderr
    topo = (b / "stacks" / "dev.topology.yaml").read_text()
    assert f"primary: {SRC}" in topo


def test_a_sync_checkpoint_left_by_one_clone_is_resumed_by_the_other(clones, endpoint: str) -> None:  # noqa: ANN001
    _run_a, _run_b, a, b = clones
    store_a = StateLayout(a, store_for(BACKEND, endpoint_url=endpoint))
    path_a = store_a.sync_checkpoint_path("dev", SRC, DST)
    from orchestrator.registry.checkpoint import Checkpoint, part_prefix, parts_of, pull_checkpoint, push_checkpoint

    # a checkpoint as an interrupted sync leaves it: bound to its plan, its journal part flushed
    left = Checkpoint(path_a, src_region=SRC, dst_region=DST)
    left.bind(["thing create t1", "thing create t2"])
    left.mark_done("thing create t1")
    left.close()
    push_checkpoint(store_a, path_a)  # what an interrupted sync does on its way out

    store_b = StateLayout(b, store_for(BACKEND, endpoint_url=endpoint))
    path_b = store_b.sync_checkpoint_path("dev", SRC, DST)
    assert pull_checkpoint(store_b, path_b) and parts_of(path_b)
    checkpoint = Checkpoint(path_b, src_region=SRC, dst_region=DST)
    checkpoint.bind(["thing create t1", "thing create t2"])
    assert checkpoint.resumed and checkpoint.is_done("thing create t1")
    assert not checkpoint.is_done("thing create t2")
    checkpoint.complete()
    push_checkpoint(store_b, path_b)  # a clean finish removes it (header and parts) from the backend too
    assert not store_a.pull(path_a) and not path_a.exists()
    assert not store_a.documents(path_a.parent, part_prefix(path_a))  # no part left in the backend


class Killed(BaseException):
    """Stands in for SIGKILL below: raised where the process would die."""


def test_a_sync_killed_midway_has_already_stored_its_checkpoint(clones, ctx: AwsContext, bucket: Any,  # noqa: ANN001
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL skips the copy a run makes on its way out; the copies made while it ran are in the
    backend when it dies, so a second machine resumes from where it stopped."""
    run_a, run_b, a, b = clones
    from orchestrator.registry import checkpoint as checkpoints

    for root in (a, b):  # DST is a member (synced to, not routed): as a promotion leaves it
        topology = root / "stacks" / "dev.topology.yaml"
        topology.write_text(topology.read_text().replace("secondaries: []", f"secondaries: [{DST}]")
                            .replace("routing: single", "routing: failover"))

    seed(client(ctx, "iot", SRC, own_retries=True), n_things=20, group_policy=False)
    monkeypatch.setattr(checkpoints, "STORE_EVERY_S", 0.0)  # store at every flush
    key = f"iot/.orchestrate/sync/dev-{SRC}-{DST}.json"
    at_death: dict[str, Any] = {}
    mark_done = checkpoints.Checkpoint.mark_done

    def dies_after_thirty(self: Any, op_key: str) -> None:  # the checkpoint flushes every 25 marks
        mark_done(self, op_key)
        if len(self) == 30:
            at_death.update(json.loads(bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
            parts = bucket.list_objects_v2(Bucket=BUCKET, Prefix=key[:-len(".json")] + ".part-").get("Contents", [])
            at_death["done"] = [k for obj in parts  # the journal parts stored while the run went on
                                for line in bucket.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
                                .decode().splitlines()[1:] for k in json.loads(line)["done"]]
            raise Killed

    monkeypatch.setattr(checkpoints.Checkpoint, "mark_done", dies_after_thirty)
    with pytest.raises(Killed):
        run_a("registry", "sync", "--from", SRC, "--to", DST)
    assert at_death["src_region"] == SRC and len(at_death["done"]) == 25, at_death
    monkeypatch.setattr(checkpoints.Checkpoint, "mark_done", mark_done)
    second = run_b("--json", "registry", "sync", "--from", SRC, "--to", DST)
    assert second.exit_code == 0, second.output + second.stderr
    report = json.loads(second.stdout)
    assert report["ok"] and report["resumed"], report  # it found the dead run's checkpoint
    assert listing(client(ctx, "iot", DST)) == listing(client(ctx, "iot", SRC))


def test_two_machines_cannot_interleave_writes_of_one_document(tmp_path: Path, endpoint: str,
                                                               bucket: Any) -> None:
    one = StateLayout(tmp_path / "one", store_for(BACKEND, endpoint_url=endpoint))
    two = StateLayout(tmp_path / "two", store_for(BACKEND, endpoint_url=endpoint))
    assert isinstance(one.store, S3Store) and one.store.location == f"s3://{BUCKET}/iot/.orchestrate"
    doc_one, doc_two = one.lifecycle_path("dev"), two.lifecycle_path("dev")
    assert one.load(doc_one) is None and two.load(doc_two) is None
    one.save(doc_one, {"by": "one"})
    with pytest.raises(StateConflict):  # both read "nothing"; the second create is refused
        two.save(doc_two, {"by": "two"})
    assert two.load(doc_two) == {"by": "one"}
    two.save(doc_two, {"by": "two"})
    with pytest.raises(StateConflict):  # one's copy is stale now (If-Match on the old ETag)
        one.save(doc_one, {"by": "one again"})
    assert one.load(doc_one) == {"by": "two"}


def test_the_engine_reads_lock_holders_from_an_s3_backend(tmp_path: Path, endpoint: str, bucket: Any) -> None:
    from orchestrator.engine.pulumi import PulumiEngine

    key = "iot/.pulumi/locks/organization/iot-platform/dev-dns/0d5f6b2e-7a9c-4c1e-9d7b-1f2e3a4b5c6d.json"
    bucket.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(
        {"pid": 4242, "username": "runner", "hostname": "fv-az123", "timestamp": "2026-11-30T12:16:47.888323687Z"}))
    bucket.put_object(Bucket=BUCKET, Key=key + ".attrs", Body=b"{}")
    engine = PulumiEngine(project_dir=tmp_path, stacks_dir=tmp_path / "stacks", backend_url=BACKEND,
                          secrets_provider=None, endpoint_url=endpoint, cli=Path("/bin/true"))
    lock = engine.lock("dev-dns")
    assert lock is not None and lock.holder == "runner@fv-az123 (pid 4242)" and lock.since == "2026-11-30T12:16:47Z"
    assert engine.lock("dev-region-eu-west-1") is None


def test_status_tells_a_missing_vault_bucket_from_an_empty_one(clones, bucket: Any,  # noqa: ANN001
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    run_a, _run_b, _a, _b = clones
    monkeypatch.setenv("ORCHESTRATE_BACKUP_DEST", "s3://no-such-vault/registry")
    missing = run_a("status", "--json")
    assert missing.exit_code == 1, missing.output
    backup = json.loads(missing.stdout)["backup"]
    assert backup["state"] == "unreachable" and "NoSuchBucket" in backup["reason"]
    bucket.create_bucket(Bucket="empty-vault")
    monkeypatch.setenv("ORCHESTRATE_BACKUP_DEST", "s3://empty-vault/registry")
    empty = run_a("status", "--json")
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout)["backup"]["state"] == "none found"
    assert json.loads(empty.stdout)["backend"] == f"s3://{BUCKET}/iot"


def test_a_failover_on_one_clone_is_not_undone_by_the_stale_topology_of_another(  # noqa: ANN001
        clones, engine: InMemoryEngine, ctx: AwsContext) -> None:
    """Who is primary (docs/architecture.md): the failover record in the backend wins over clone b's
    committed (pre-failover) topology: b's `up --all` is refused (exit 2) and DNS stays as it is."""
    run_a, run_b, a, b = clones
    sim = engine.after_up[0]

    def dns() -> list[tuple[str, str]]:
        return sorted((rr.get("Failover") or "simple", rr["ResourceRecords"][0]["Value"]) for rr in sim.records())

    assert run_a("up", "--region", SRC).exit_code == 0
    seed(client(ctx, "iot", SRC, own_retries=True), n_things=3, group_policy=False)
    assert run_a("promote-secondary", "--region", DST).exit_code == 0
    shutil.copy(a / "stacks" / "dev.topology.yaml", b / "stacks" / "dev.topology.yaml")  # committed, pulled by b
    failover = run_a("failover", "--to", DST)
    assert failover.exit_code == 0, failover.output + failover.stderr
    assert "next: commit" in failover.stdout and "orchestrate up --all" in failover.stdout, failover.stdout
    after_failover = dns()
    primary = [value for role, value in after_failover if role == "PRIMARY"]
    assert primary and DST in primary[0], after_failover

    engine.calls.clear()
    stale = run_b("up", "--all")
    assert stale.exit_code == 2, stale.output + stale.stderr
    assert f"the recorded primary is {DST}, the file's is {SRC}" in stale.stderr, stale.stderr
    assert f"failover {SRC} -> {DST}, done" in stale.stderr and "commit" in stale.stderr, stale.stderr
    assert engine.ops("up") == [] and dns() == after_failover  # nothing touched, DNS unchanged

    shutil.copy(a / "stacks" / "dev.topology.yaml", b / "stacks" / "dev.topology.yaml")  # b takes a's topology
    fresh = run_b("up", "--all")
    assert fresh.exit_code == 0, fresh.output + fresh.stderr
    assert dns() == after_failover


def test_the_url_form_pulumi_documents_for_s3_compatible_stores_reaches_an_http_endpoint(
        tmp_path: Path, endpoint: str, bucket: Any) -> None:
    """`?endpoint=host:port&disableSSL=true&s3ForcePathStyle=true` (MinIO-style): plain http, path style."""
    from urllib.parse import urlsplit

    host = urlsplit(endpoint).netloc
    url = f"s3://{BUCKET}/minio?endpoint={host}&disableSSL=true&s3ForcePathStyle=true&region=us-east-1"
    layout = StateLayout(tmp_path / "one", store_for(url))  # no --endpoint-url: the URL says it all
    assert layout.store.client.meta.endpoint_url == f"http://{host}"  # type: ignore[attr-defined]
    assert layout.store.client.meta.config.s3 == {"addressing_style": "path"}  # type: ignore[attr-defined]
    layout.save(layout.lifecycle_path("dev"), {"by": "minio"})
    assert "minio/.orchestrate/lifecycle/dev.json" in stored_keys(bucket)
    other = StateLayout(tmp_path / "two", store_for(url))
    assert other.load(other.lifecycle_path("dev")) == {"by": "minio"}


def test_a_bad_boolean_in_the_backend_url_is_bad_input() -> None:
    from orchestrator.errors import InputRejected

    with pytest.raises(InputRejected, match="disableSSL='maybe' is not true or false"):
        store_for(f"s3://{BUCKET}/x?endpoint=127.0.0.1:9&disableSSL=maybe")


def _dst_writes(gate: Any, key: str) -> list[str]:
    """The calls signed with access key `key` that changed something in DST (the destination)."""
    return [c.operation for c in gate.calls
            if c.key == key and c.region == DST and not c.operation.startswith(("GET ", "HEAD "))]


def test_two_syncs_of_one_region_pair_on_two_machines_do_not_both_apply(  # noqa: ANN001
        clones, ctx: AwsContext, bucket: Any, gate: Any, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clone a's sync holds the pair's lease while it applies; clone b's sync, started on another
    machine (another process, its own credentials) in the middle of a's, exits 3 naming a as the
    holder, and writes nothing to the destination. a then finishes and releases the lease."""
    import os
    import subprocess
    import sys

    run_a, _run_b, a, b = clones
    from orchestrator.registry import checkpoint as checkpoints

    for root in (a, b):  # DST is a member (synced to, not routed): as a promotion leaves it
        topology = root / "stacks" / "dev.topology.yaml"
        topology.write_text(topology.read_text().replace("secondaries: []", f"secondaries: [{DST}]")
                            .replace("routing: single", "routing: failover"))
    seed(client(ctx, "iot", SRC, own_retries=True), n_things=12, group_policy=False)
    lock_key = f"iot/.orchestrate/sync/dev-{SRC}-{DST}.lock.json"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "CLONEBMACHINE", "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    env.pop("ORCHESTRATE_ENV", None)
    second: dict[str, Any] = {}
    mark_done = checkpoints.Checkpoint.mark_done

    def b_starts_while_a_applies(self: Any, op_key: str) -> None:
        mark_done(self, op_key)
        if second:
            return
        second["during"] = json.loads(bucket.get_object(Bucket=BUCKET, Key=lock_key)["Body"].read())
        second["proc"] = subprocess.run(
            [sys.executable, "-m", "orchestrator", "registry", "sync", "--from", SRC, "--to", DST,
             "--endpoint-url", endpoint], cwd=b, env=env, capture_output=True, text=True, timeout=120)

    monkeypatch.setattr(checkpoints.Checkpoint, "mark_done", b_starts_while_a_applies)
    first = run_a("--json", "registry", "sync", "--from", SRC, "--to", DST)
    assert first.exit_code == 0, first.output + first.stderr
    report = json.loads(first.stdout)
    assert report["ok"] and report["applied"] > 0, report  # a applied the operations

    proc = second["proc"]
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"registry sync {SRC} -> {DST} (env dev) is running elsewhere" in proc.stderr, proc.stderr
    assert f"held by {second['during']['holder']}" in proc.stderr and " old (since " in proc.stderr, proc.stderr
    assert f"(pid {os.getpid()})" in second["during"]["holder"]  # the holder is a, this test's process
    assert [c for c in gate.calls if c.key == "CLONEBMACHINE"], "clone b never reached the backend"
    assert _dst_writes(gate, "CLONEBMACHINE") == []  # b wrote nothing to the destination
    assert _dst_writes(gate, "testing")  # … while a did
    assert listing(client(ctx, "iot", DST)) == listing(client(ctx, "iot", SRC))
    assert lock_key not in stored_keys(bucket)  # a released the lease when it finished


def test_a_sync_whose_holder_died_is_taken_over_after_the_lease_expires(  # noqa: ANN001
        clones, ctx: AwsContext, bucket: Any) -> None:
    """A lease left by a run that died (no renewal since long before its TTL) does not block the
    next sync: it is taken over, and the sync says whose it was."""
    import time

    _run_a, run_b, _a, b = clones
    topology = b / "stacks" / "dev.topology.yaml"
    topology.write_text(topology.read_text().replace("secondaries: []", f"secondaries: [{DST}]")
                        .replace("routing: single", "routing: failover"))
    seed(client(ctx, "iot", SRC, own_retries=True), n_things=3, group_policy=False)
    lock_key = f"iot/.orchestrate/sync/dev-{SRC}-{DST}.lock.json"
    dead = time.time() - 3600
    bucket.put_object(Bucket=BUCKET, Key=lock_key, Body=json.dumps(
        {"holder": "ci@runner-7 (pid 99)", "what": "registry sync", "acquired_at": dead, "renewed_at": dead,
         "ttl_s": 300.0}))
    result = run_b("registry", "sync", "--from", SRC, "--to", DST)
    assert result.exit_code == 0, result.output + result.stderr
    assert "took over the expired lease of ci@runner-7 (pid 99)" in result.stderr, result.stderr
    assert listing(client(ctx, "iot", DST)) == listing(client(ctx, "iot", SRC))
    assert lock_key not in stored_keys(bucket)

    live = time.time() - 10
    bucket.put_object(Bucket=BUCKET, Key=lock_key, Body=json.dumps(
        {"holder": "ci@runner-8 (pid 7)", "what": "registry sync", "acquired_at": live - 50, "renewed_at": live,
         "ttl_s": 300.0}))
    refused = run_b("registry", "sync", "--from", SRC, "--to", DST)
    assert refused.exit_code == 3, refused.output + refused.stderr
    import re

    assert re.search(r"held by ci@runner-8 \(pid 7\), 6\d s old \(since .*lease renewed 1\d s ago", refused.stderr), \
        refused.stderr


def test_a_sync_whose_lease_was_taken_over_stops_at_its_next_checkpoint_copy(  # noqa: ANN001
        clones, ctx: AwsContext, bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder cut off long enough for its lease to expire (a paused VM, a partition) finds it
    replaced when it next copies its checkpoint: it stops (exit 3) instead of writing on beside the
    run that took over, and leaves that run's lease in place."""
    run_a, _run_b, a, _b = clones
    from orchestrator.registry import checkpoint as checkpoints

    topology = a / "stacks" / "dev.topology.yaml"
    topology.write_text(topology.read_text().replace("secondaries: []", f"secondaries: [{DST}]")
                        .replace("routing: single", "routing: failover"))
    seed(client(ctx, "iot", SRC, own_retries=True), n_things=40, group_policy=False)
    monkeypatch.setattr(checkpoints, "STORE_EVERY_S", 0.0)  # copy at every flush (every 25 marks)
    lock_key = f"iot/.orchestrate/sync/dev-{SRC}-{DST}.lock.json"
    other = json.dumps({"holder": "ci@runner-9 (pid 5)", "what": "registry sync", "acquired_at": 0,
                        "renewed_at": 9e12, "ttl_s": 300.0})
    mark_done = checkpoints.Checkpoint.mark_done

    def taken_over_after_ten(self: Any, op_key: str) -> None:
        mark_done(self, op_key)
        if len(self) == 10:
            bucket.put_object(Bucket=BUCKET, Key=lock_key, Body=other)

    monkeypatch.setattr(checkpoints.Checkpoint, "mark_done", taken_over_after_ten)
    result = run_a("registry", "sync", "--from", SRC, "--to", DST)
    assert result.exit_code == 3, result.output + result.stderr
    assert "was lost" in result.stderr and "this run stopped" in result.stderr, result.stderr
    assert listing(client(ctx, "iot", DST)) != listing(client(ctx, "iot", SRC))  # it did not write on to the end
    assert bucket.get_object(Bucket=BUCKET, Key=lock_key)["Body"].read().decode() == other  # not removed
