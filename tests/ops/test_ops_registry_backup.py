"""Registry backups to a directory and to S3 (moto), and restores into another region."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext
from orchestrator.errors import InputRejected
from orchestrator.registry import (
    SyncOptions,
    SyncPlanSummary,
    SyncReport,
    backup,
    backup_age,
    backup_region,
    latest_backup_age,
    load_backup,
    plan_backup_restore,
    plan_restore,
    read_snapshot,
    restore_backup,
    restore_registry,
)
from tests.ops.conftest import SRC, THIRD
from tests.ops.registry_world import CallLog, listing, seed

IotFactory = Callable[[str], Any]
T0 = datetime(2026, 11, 26, 9, 30, 0, tzinfo=timezone.utc)

# a stack export as `pulumi stack export` gives it: secrets are ciphertext we must not touch
EXPORT = {
    "version": 3,
    "deployment": {
        "manifest": {"time": "2026-11-26T09:00:00Z"},
        "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:abc:def"}},
        "resources": [{"urn": "urn:pulumi:dev::iot-platform::aws:iot/thing:Thing::x",
                       "outputs": {"token": {
                           "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                           "ciphertext": "v1:SGVsbG8=:c2VjcmV0LWNpcGhlcg=="}}}],
    },
}


def test_backup_to_a_directory_then_restore_into_a_third_region(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path, signing_key: str) -> None:
    src = iot(SRC)
    seed(src, 8)
    dest = tmp_path / "backups"

    result = backup_region(ctx, "dev", SRC, dest, stack_exports={"dev-region-eu-west-1": EXPORT}, now=T0)

    where = dest / "dev" / SRC / "20261126T093000Z"
    assert result.location == str(where)
    assert sorted(p.relative_to(where).as_posix() for p in where.rglob("*") if p.is_file()) == \
        ["manifest.json", "manifest.sig", "plane.json", "registry.json", "stacks/dev-region-eu-west-1.json"]
    manifest = json.loads((where / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["env"] == "dev" and manifest["region"] == SRC
    assert manifest["created_at"] == "2026-11-26T09:30:00Z"
    assert manifest["counts"]["things"] == 9 and manifest["counts"]["certificates"] == 9
    assert json.loads((where / "stacks/dev-region-eu-west-1.json").read_text()) == EXPORT  # as given
    registry = (where / "registry.json").read_text()
    assert "BEGIN CERTIFICATE" in registry and "PRIVATE KEY" not in registry

    report = restore_registry(ctx, dest, THIRD, env="dev", region=SRC, rate=10_000)

    assert isinstance(report, SyncReport)
    assert report.ok, report.errors
    third = iot(THIRD)
    assert listing(third) == listing(src)  # same registry, modulo the region in policy ARNs
    pinned = json.loads(third.get_policy(policyName="telemetry-pinned")["policyDocument"])
    assert THIRD in pinned["Statement"][0]["Resource"][0]
    assert {c.id for c in read_snapshot(third, pems=False).certificates} == \
        {c.id for c in read_snapshot(src, pems=False).certificates}


def test_restore_is_idempotent_and_completes_a_partial_region(iot: IotFactory, tmp_path: Path) -> None:
    src, third = iot(SRC), iot(THIRD)
    seed(src, 6)
    backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0)
    first = restore_backup(tmp_path, third, options=SyncOptions(rate=10_000))
    assert isinstance(first, SyncReport) and first.ok

    log = CallLog(third)
    again = restore_backup(tmp_path, third, options=SyncOptions(rate=10_000))
    assert isinstance(again, SyncReport) and again.write_calls == 0 and log.writes == 0

    arn = third.list_thing_principals(thingName="dev-0003")["principals"][0]
    third.detach_thing_principal(thingName="dev-0003", principal=arn)
    third.delete_thing(thingName="dev-0003")
    partial = restore_backup(tmp_path, third, options=SyncOptions(rate=10_000))
    assert isinstance(partial, SyncReport)
    assert partial.counts["thing"]["create"] == 1
    assert partial.counts["thing_principal"]["create"] == 1
    assert listing(third) == listing(src)


def test_backup_to_s3_is_encrypted_and_restores_the_newest(
        ctx: AwsContext, iot: IotFactory, s3: Callable[[str], Any], signing_key: str) -> None:
    src = iot(SRC)
    seed(src, 5)
    bucket = s3(SRC)
    bucket.create_bucket(Bucket="moto-bucket", CreateBucketConfiguration={"LocationConstraint": SRC})

    older = backup_region(ctx, "dev", SRC, "s3://moto-bucket/registry", now=T0)
    src.create_thing(thingName="late-thing")
    newer = backup_region(ctx, "dev", SRC, "s3://moto-bucket/registry",
                          stack_exports={"dev-dns": EXPORT}, now=T0 + timedelta(hours=1))

    assert older.location == f"s3://moto-bucket/registry/dev/{SRC}/20261126T093000Z"
    assert newer.location == f"s3://moto-bucket/registry/dev/{SRC}/20261126T103000Z"
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="moto-bucket")["Contents"]]
    assert f"registry/dev/{SRC}/20261126T103000Z/stacks/dev-dns.json" in keys
    for key in keys:
        assert bucket.head_object(Bucket="moto-bucket", Key=key)["ServerSideEncryption"] == "AES256"

    report = restore_registry(ctx, "s3://moto-bucket/registry", THIRD, rate=10_000)

    assert isinstance(report, SyncReport)
    assert report.ok, report.errors
    assert "late-thing" in read_snapshot(iot(THIRD), pems=False).things_by_name
    assert listing(iot(THIRD)) == listing(src)
    age = backup_age(ctx, "s3://moto-bucket/registry", env="dev", region=SRC)
    assert age is not None and age < datetime.now(timezone.utc) - T0


def test_restore_dry_run_changes_nothing(iot: IotFactory, tmp_path: Path) -> None:
    src, third = iot(SRC), iot(THIRD)
    seed(src, 3)
    backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0)
    summary = plan_backup_restore(tmp_path, third, options=SyncOptions())
    assert isinstance(summary, SyncPlanSummary)
    assert summary.counts["thing"]["create"] == 4
    assert read_snapshot(third, pems=False).things == ()


def test_plan_restore_reads_the_backup_and_the_region_and_writes_nothing(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path, signer: Any) -> None:
    src, third = iot(SRC), iot(THIRD)
    seed(src, 3)
    backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0, signer=signer)

    summary = plan_restore(ctx, tmp_path, THIRD, env="dev", region=SRC)

    assert isinstance(summary, SyncPlanSummary)
    assert summary.to_json()["dry_run"] is True
    assert summary.counts["thing"]["create"] == 4 and summary.total > 4
    after = read_snapshot(third, pems=False)
    assert after.things == () and after.certificates == () and after.policies == ()
    with pytest.raises(InputRejected, match="residency"):
        plan_restore(ctx, tmp_path, THIRD, residency=[SRC])


def test_latest_backup_age_and_an_empty_destination(iot: IotFactory, tmp_path: Path) -> None:
    assert latest_backup_age(tmp_path / "nothing-here") is None
    snap = read_snapshot(iot(SRC))
    backup(snap, {}, tmp_path, env="dev", now=T0)
    backup(snap, {}, tmp_path, env="dev", now=T0 + timedelta(minutes=10))
    backup(snap, {}, tmp_path, env="prod", now=T0 + timedelta(hours=5))
    now = T0 + timedelta(hours=1)
    assert latest_backup_age(tmp_path, env="dev", region=SRC, now=now) == timedelta(minutes=50)
    assert latest_backup_age(tmp_path, env="prod", now=now + timedelta(hours=5)) == timedelta(hours=1)
    assert latest_backup_age(tmp_path, env="staging") is None


def test_two_backups_in_the_same_second_do_not_overwrite_each_other(iot: IotFactory, tmp_path: Path) -> None:
    snap = read_snapshot(iot(SRC))
    first = backup(snap, {}, tmp_path, env="dev", now=T0)
    second = backup(snap, {}, tmp_path, env="dev", now=T0)
    assert first.location != second.location
    assert load_backup(tmp_path, env="dev").location == second.location


def test_a_tampered_or_incomplete_backup_is_refused(iot: IotFactory, tmp_path: Path) -> None:
    src = iot(SRC)
    seed(src, 2)
    result = backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0)
    registry = Path(result.location) / "registry.json"
    registry.write_text(registry.read_text().replace("dev-0001", "dev-9999"))
    with pytest.raises(InputRejected, match="digest"):
        load_backup(result.location)
    (Path(result.location) / "manifest.json").unlink()  # no manifest: not a backup
    with pytest.raises(InputRejected, match="no complete registry backup"):
        load_backup(tmp_path)


def test_backup_rejects_names_that_are_not_paths(iot: IotFactory, tmp_path: Path) -> None:
    snap = read_snapshot(iot(SRC))
    with pytest.raises(InputRejected):
        backup(snap, {"../../etc/passwd": {}}, tmp_path, env="dev")
    with pytest.raises(InputRejected):
        backup(snap, {}, tmp_path, env="Dev/../x")


# -- rollbacks: the newest valid backup by signed time ----------------------------------------------

def _decommission(iot: Any, world: Any, name: str) -> str:
    """Retire a device as an operator does: certificate detached, deactivated and deleted."""
    cert_id = world.cert_ids[name]
    arn = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]
    iot.detach_thing_principal(thingName=name, principal=arn)
    for policy in iot.list_attached_policies(target=arn)["policies"]:
        iot.detach_policy(policyName=policy["policyName"], target=arn)
    iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    iot.delete_certificate(certificateId=cert_id)
    return str(cert_id)


def _cert_ids(iot: Any) -> dict[str, str]:
    return {c.id: c.status for c in read_snapshot(iot, pems=False).certificates}


def test_an_old_backup_copied_to_a_newer_looking_folder_is_not_restored(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path, signer: Any) -> None:
    """Issue 19: the newest backup is the newest by its signed creation time: a copy of an old
    signed backup under a later folder name does not bring a decommissioned certificate back."""
    import shutil

    src = iot(SRC)
    world = seed(src, 4, group_policy=False)
    old = backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0, signer=signer)
    retired = _decommission(src, world, "dev-0003")
    new = backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0 + timedelta(hours=1), signer=signer)
    shutil.copytree(old.location, tmp_path / "dev" / SRC / "20261127T000000Z")  # "newer" by name

    loaded = load_backup(tmp_path, env="dev", region=SRC, verifier=signer)
    assert loaded.location == new.location and loaded.rollback() is None
    assert any("20261127T000000Z" in w and "folder name" in w for w in loaded.warnings)
    report = restore_registry(ctx, tmp_path, THIRD, env="dev", region=SRC, rate=10_000)
    assert report.ok, report.errors
    assert retired not in _cert_ids(iot(THIRD))
    assert latest_backup_age(tmp_path, env="dev", region=SRC, now=T0 + timedelta(hours=2),
                             verifier=signer) == timedelta(hours=1)


def test_an_unsigned_or_truncated_newest_backup_is_skipped_with_a_warning(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path, signer: Any) -> None:
    """A backup killed before its signature, or whose manifest was cut short, does not block a
    restore: the newest valid one is used, and the report says what was skipped."""
    src = iot(SRC)
    seed(src, 3)
    good = backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0, signer=signer)
    src.create_thing(thingName="after-the-good-one")
    unsigned = backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0 + timedelta(hours=1))  # no signature
    cut = backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0 + timedelta(hours=2), signer=signer)
    manifest = Path(cut.location) / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])  # truncated

    loaded = load_backup(tmp_path, env="dev", verifier=signer)
    assert loaded.location == good.location
    assert any(unsigned.location in w and "not signed" in w for w in loaded.warnings), loaded.warnings
    assert any(cut.location in w and "not JSON" in w for w in loaded.warnings), loaded.warnings

    report = restore_registry(ctx, tmp_path, THIRD, env="dev", rate=10_000)
    assert report.ok, report.errors
    assert "after-the-good-one" not in read_snapshot(iot(THIRD), pems=False).things_by_name
    assert any("skipped" in w and unsigned.location in w for w in report.warnings), report.warnings
    age = latest_backup_age(tmp_path, env="dev", now=T0 + timedelta(hours=3), verifier=signer)
    assert age == timedelta(hours=3)  # the good one's, not the unsigned or the truncated one's


def test_restoring_an_older_backup_needs_allow_older_and_says_what_it_reactivates(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path, signer: Any) -> None:
    """Naming an older backup is a rollback: refused (exit 4, nothing written) without
    allow_older; with it, what would come back is said before the question, and the restore stays
    additive (a certificate deactivated since stays INACTIVE)."""
    from orchestrator.errors import GuardRefused
    from orchestrator.registry.guards import RestoreGuard

    src = iot(SRC)
    world = seed(src, 4, group_policy=False)
    old = backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0, signer=signer)
    retired = _decommission(src, world, "dev-0003")
    src.update_certificate(certificateId=world.cert_ids["dev-0000"], newStatus="INACTIVE")
    backup(read_snapshot(src), {}, tmp_path, env="dev", now=T0 + timedelta(hours=1), signer=signer)
    before = listing(src)

    with pytest.raises(GuardRefused, match="older than the newest valid backup") as refused:
        restore_registry(ctx, old.location, SRC, rate=10_000)
    assert refused.value.exit_code == 4 and "--allow-older" in (refused.value.hint or "")
    assert listing(src) == before

    said: list[str] = []
    asked: list[str] = []
    guard = RestoreGuard(confirm=lambda question, _region: asked.append(f"{len(said)}: {question}"),
                         notify=said.append)
    plan = plan_restore(ctx, old.location, SRC, guard=RestoreGuard(notify=said.append))
    assert any("older than the newest valid backup" in w for w in plan.warnings)
    said.clear()
    report = restore_registry(ctx, old.location, SRC, rate=10_000, guard=guard, allow_older=True)

    assert report.ok, report.errors
    text = "\n".join(said)
    assert "re-activate" in text and f"certificate {retired[:12]}… ACTIVE again (absent in {SRC})" in text
    assert world.cert_ids["dev-0000"][:12] not in text  # additive: INACTIVE stays, so not listed
    assert asked and int(asked[0].split(":")[0]) > 0  # said before asked
    statuses = _cert_ids(src)
    assert statuses[retired] == "ACTIVE" and statuses[world.cert_ids["dev-0000"]] == "INACTIVE"


def test_backups_work_against_a_vault_under_object_lock(
        ctx: AwsContext, iot: IotFactory, s3: Callable[[str], Any], signing_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The vault as the stack makes it: versioned, Object Lock in governance mode by default. S3
    refuses a PutObject there without Content-MD5 or a checksum; each object written is locked.
    The backup asks for its checksum itself: an SDK configured to send checksums only when an API
    requires them (AWS_REQUEST_CHECKSUM_CALCULATION=when_required) would send none."""
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    src = iot(SRC)
    seed(src, 2)
    vault = s3(SRC)
    vault.create_bucket(Bucket="locked-vault", ObjectLockEnabledForBucket=True,
                        CreateBucketConfiguration={"LocationConstraint": SRC})
    vault.put_object_lock_configuration(Bucket="locked-vault", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 35}}})

    result = backup_region(ctx, "dev", SRC, "s3://locked-vault/registry", now=T0)

    keys = [o["Key"] for o in vault.list_objects_v2(Bucket="locked-vault")["Contents"]]
    assert len(keys) == 4  # registry, plane, manifest, signature
    for key in keys:
        head = vault.head_object(Bucket="locked-vault", Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"] > T0
    locked = vault.list_object_versions(Bucket="locked-vault", Prefix=keys[0])["Versions"][0]
    with pytest.raises(Exception, match="AccessDenied"):
        vault.delete_object(Bucket="locked-vault", Key=keys[0], VersionId=locked["VersionId"])
    assert load_backup("s3://locked-vault/registry", s3_client=vault).location == result.location


def test_restore_cli_refuses_a_rollback_without_allow_older_and_lists_what_comes_back(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path, signer: Any, endpoint: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`registry restore --src <an older backup>`: exit 4 and the hint without --allow-older; with
    it, the re-activations are on stderr and the restore runs (--yes)."""
    from click.testing import CliRunner

    from orchestrator.cli.app import Deps
    from orchestrator.cli.main import cli
    from tests.doubles import InMemoryEngine, project_copy

    (tmp_path / "project").mkdir()
    project_copy(tmp_path / "project", monkeypatch)
    src = iot(SRC)
    world = seed(src, 3, group_policy=False)
    old = backup(read_snapshot(src), {}, tmp_path / "vault", env="dev", now=T0, signer=signer)
    retired = _decommission(src, world, "dev-0000")
    backup(read_snapshot(src), {}, tmp_path / "vault", env="dev", now=T0 + timedelta(hours=1), signer=signer)

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["registry", "restore", "--region", SRC, "--src", old.location,
                                        "--rate", "500", *args, "--endpoint-url", endpoint],
                                  obj=Deps(engine_factory=lambda app: InMemoryEngine()), catch_exceptions=False)

    refused = run("--yes")
    assert refused.exit_code == 4, refused.output
    assert "older than the newest valid backup" in refused.stderr and "--allow-older" in refused.stderr
    assert retired not in _cert_ids(src)

    done = run("--allow-older", "--yes")
    assert done.exit_code == 0, done.output
    assert f"certificate {retired[:12]}… ACTIVE again (absent in {SRC})" in done.stderr
    assert _cert_ids(src)[retired] == "ACTIVE"


def test_status_ages_the_newest_valid_backup_as_a_restore_would_choose_it(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path, signer: Any, signing_key: str) -> None:
    """`backup_age` (what `status` shows) with the signing key: an unsigned backup written later
    (a job killed before its signature) and an old backup under a newer name do not count."""
    import shutil

    snap = read_snapshot(iot(SRC))
    first = backup(snap, {}, tmp_path, env="dev", now=T0 - timedelta(days=3), signer=signer)
    backup(snap, {}, tmp_path, env="dev", now=T0, signer=signer)
    backup(snap, {}, tmp_path, env="dev", now=T0 + timedelta(hours=2))  # unsigned
    shutil.copytree(first.location, tmp_path / "dev" / SRC / "20261130T000000Z")

    age = backup_age(ctx, tmp_path, env="dev", signing_key=signing_key, key_region=SRC)
    assert age is not None
    assert timedelta(0) < datetime.now(timezone.utc) - T0 - age < timedelta(minutes=5)
    assert backup_age(ctx, tmp_path / "none", env="dev", signing_key=signing_key, key_region=SRC) is None
