"""Registry deletions, restores and checkpoints against a real moto server: nothing is wiped,
loosened or trusted on a short page, a tampered file or a stale checkpoint.

A listing fault proxy (`ListingFault`) rewrites what moto answers to ListThings on one client:
an empty page, or a page that lost its continuation token. Each test names what the old code did.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orchestrator.aws import AwsContext
from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.errors import GuardRefused, InputRejected
from orchestrator.registry import (
    Caller,
    Checkpoint,
    SyncOptions,
    SyncReport,
    apply_sync,
    backup,
    backup_region,
    load_backup,
    plan_sync,
    read_snapshot,
    restore_registry,
    sync_clients,
)
from orchestrator.registry.guards import DeleteBudget, PruneGuard, RestoreGuard
from orchestrator.registry.signing import certificate_id
from tests.doubles import InMemoryEngine
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.registry_world import FaultInjector, make_pem, seed, thing_name

IotFactory = Callable[[str], Any]
FAST = {"rate": 10_000.0}
T0 = datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parents[2]


class ListingFault:
    """Rewrites one client's ListThings answers: `empty` (no things, no token) or `drop-token` (the
    first page loses its continuation token). Only the first `pages` answers are touched."""

    def __init__(self, client: Any, mode: str, pages: int = 1) -> None:
        self.mode, self.left = mode, pages
        client.meta.events.register("after-call.iot.ListThings", self._rewrite)

    def _rewrite(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        if self.mode == "empty":
            parsed["things"] = []
        parsed.pop("nextToken", None)


class Answers:
    """A confirm callback that says yes and remembers the questions."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def __call__(self, question: str, expected: str) -> None:
        self.asked.append((question, expected))


def things(client: Any) -> set[str]:
    return set(read_snapshot(client, pems=False).things_by_name)


def synced(iot: IotFactory, n: int = 12) -> tuple[Any, Any]:
    src, dst = iot(SRC), iot(DST)
    seed(src, n, group_policy=False)
    first = sync_clients(src, dst, SyncOptions(**FAST))
    assert first.ok, first.errors
    return src, dst


def prune(src: Any, dst: Any, guard: PruneGuard, **kwargs: Any) -> SyncReport:
    return sync_clients(src, dst, SyncOptions(prune=True, guard=guard, **FAST), **kwargs)


# -- pruning ------------------------------------------------------------------------------------
def test_an_empty_source_page_deletes_nothing(iot: IotFactory) -> None:
    """Before: one empty ListThings page from the source deleted every thing of the destination."""
    _, dst = synced(iot)
    before = things(dst)
    src = iot(SRC)
    ListingFault(src, "empty")
    answers = Answers()
    with pytest.raises(GuardRefused) as refused:
        prune(src, dst, PruneGuard(confirm=answers))
    assert "deletion budget" in refused.value.one_line() and "nothing was deleted" in refused.value.one_line()
    assert refused.value.exit_code == 4
    assert things(iot(DST)) == before and answers.asked == []


def test_a_page_without_its_continuation_token_deletes_nothing(iot: IotFactory) -> None:
    """Before: a page returned without its nextToken deleted every thing listed after it."""
    _, dst = synced(iot)
    before = things(dst)
    src = iot(SRC)
    ListingFault(src, "drop-token")
    with pytest.raises(GuardRefused, match="not provably complete"):
        prune(src, dst, PruneGuard(budget=DeleteBudget(percent=100), confirm=Answers()),
              src_caller=Caller(src, page_size=5))
    assert things(iot(DST)) == before


def test_a_sharp_drop_since_the_last_complete_listing_needs_a_sync_without_prune_first(
        iot: IotFactory, tmp_path: Path) -> None:
    src, dst = synced(iot, 24)
    record = tmp_path / "listings.json"
    recorder = PruneGuard(record_path=record)
    assert sync_clients(src, dst, SyncOptions(guard=recorder, **FAST)).ok
    assert json.loads(record.read_text())[SRC]["things"] == 25
    for i in range(14):  # more than half the source goes (a real change, or a short listing)
        for principal in src.list_thing_principals(thingName=thing_name(i))["principals"]:
            src.detach_thing_principal(thingName=thing_name(i), principal=principal)
        src.delete_thing(thingName=thing_name(i))
    generous = PruneGuard(budget=DeleteBudget(percent=100), confirm=Answers(), record_path=record)
    with pytest.raises(GuardRefused, match="down from 25"):
        prune(src, dst, generous)
    assert len(things(iot(DST))) == 25
    # the deliberate override: a sync without --prune records the new count, then pruning works
    assert sync_clients(src, dst, SyncOptions(guard=recorder, **FAST)).ok
    pruned = prune(src, dst, generous)
    assert pruned.ok and pruned.counts["thing"]["delete"] == 14


def test_deletions_within_budget_are_shown_and_confirmed(iot: IotFactory) -> None:
    src, dst = synced(iot, 24)
    src.detach_thing_principal(thingName=thing_name(3),
                               principal=src.list_thing_principals(thingName=thing_name(3))["principals"][0])
    src.delete_thing(thingName=thing_name(3))
    shown: list[str] = []
    with pytest.raises(GuardRefused, match="without confirmation"):
        prune(src, dst, PruneGuard(notify=shown.append))  # nobody to ask: refused
    assert thing_name(3) in things(iot(DST))
    assert any("delete thing " + thing_name(3) in line for line in shown)
    answers = Answers()
    report = prune(src, dst, PruneGuard(confirm=answers))
    assert report.ok and report.counts["thing"]["delete"] == 1
    assert answers.asked == [(f"delete {report.planned} items from the registry of {DST}", DST)]
    assert thing_name(3) not in things(iot(DST))


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, residency: str = f"{SRC}, {DST}") -> Path:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    (root / "stacks" / "dev.topology.yaml").write_text(
        f"# dev\ndomain: iot.example.com\nhosted_zone: example.com\nprimary: {SRC}\nsecondaries: [{DST}]\n"
        f"routing: failover\nresidency: [{residency}]\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("ORCHESTRATE_ENV", raising=False)
    monkeypatch.delenv("ORCHESTRATE_CONFIG", raising=False)
    return root


@pytest.fixture
def cli_run(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    _project(tmp_path, monkeypatch)

    def invoke(*args: str) -> Result:
        deps = Deps(engine_factory=lambda app: InMemoryEngine())
        return CliRunner().invoke(cli, [*args, "--endpoint-url", endpoint], obj=deps, catch_exceptions=False)

    return invoke


def test_prune_from_a_region_that_is_not_a_member_is_exit_2(iot: IotFactory, cli_run: Callable[..., Result]) -> None:
    """Before: `--from eu-north-1 --to <primary> --prune` (empty, not a member, not in residency)
    deleted the primary's whole registry with exit 0 and no prompt."""
    seed(iot(SRC), 6, group_policy=False)
    before = things(iot(SRC))
    result = cli_run("registry", "sync", "--from", "eu-north-1", "--to", SRC, "--prune", "--yes")
    assert result.exit_code == 2 and "--from eu-north-1" in result.stderr
    assert things(iot(SRC)) == before


def test_cli_prune_needs_yes_without_a_terminal(iot: IotFactory, cli_run: Callable[..., Result]) -> None:
    src, dst = synced(iot, 24)
    dst.create_thing(thingName="rogue-1")
    result = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--prune")
    assert result.exit_code == 4 and "--yes" in result.stderr
    assert "delete thing rogue-1" in result.stderr  # the plan is shown before the question
    assert "rogue-1" in things(iot(DST))
    result = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--prune", "--yes", "--max-delete", "0")
    assert result.exit_code == 4 and "deletion budget is 0" in result.stderr
    result = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--prune", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["thing"]["delete"] == 1
    assert "rogue-1" not in things(iot(DST))


def test_a_dry_run_of_prune_says_what_the_real_run_would_refuse(iot: IotFactory,
                                                                  cli_run: Callable[..., Result]) -> None:
    src, dst = synced(iot, 24)
    dst.create_thing(thingName="rogue-1")
    over = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--prune", "--dry-run", "--max-delete", "0",
                   "--json")
    assert over.exit_code == 0, over.output  # a dry run asks nothing and refuses nothing
    plan = json.loads(over.stdout)
    assert plan["counts"]["thing"]["delete"] == 1
    (warning,) = [w for w in plan["warnings"] if w.startswith("a real --prune run would refuse")]
    assert "deletion budget is 0" in warning
    within = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--prune", "--dry-run", "--json")
    assert within.exit_code == 0, within.output
    assert not [w for w in json.loads(within.stdout)["warnings"] if "would refuse" in w]
    assert "rogue-1" in things(iot(DST))  # nothing was deleted by either


# -- restore --------------------------------------------------------------------------------------
def _policy(client: Any, name: str) -> dict[str, Any]:
    return json.loads(client.get_policy(policyName=name)["policyDocument"])


DENY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iot:*", "Resource": "*"}]})


def test_restore_is_additive_and_overwrite_is_confirmed(ctx: AwsContext, iot: IotFactory, tmp_path: Path,
                                                          signing_key: str) -> None:
    """Before: restoring an older backup re-activated a certificate deactivated since and reverted a
    tightened (Deny) policy."""
    src = iot(SRC)
    world = seed(src, 6, group_policy=False)
    backup_region(ctx, "dev", SRC, tmp_path, now=T0)
    assert restore_registry(ctx, tmp_path, DST, rate=10_000).ok
    dst = iot(DST)
    cert = world.cert_ids[thing_name(0)]
    dst.update_certificate(certificateId=cert, newStatus="INACTIVE")
    dst.create_policy_version(policyName="device", policyDocument=DENY, setAsDefault=True)

    again = restore_registry(ctx, tmp_path, DST, rate=10_000)

    assert again.ok, again.errors
    assert dst.describe_certificate(certificateId=cert)["certificateDescription"]["status"] == "INACTIVE"
    assert _policy(dst, "device")["Statement"][0]["Effect"] == "Deny"
    left = [w for w in again.warnings if "left" in w and "as they are" in w]
    assert left and "certificate" in left[0] and "policy device" in left[0]

    with pytest.raises(GuardRefused, match="without confirmation"):
        restore_registry(ctx, tmp_path, DST, rate=10_000, guard=RestoreGuard(overwrite=True))
    answers = Answers()
    forced = restore_registry(ctx, tmp_path, DST, rate=10_000, guard=RestoreGuard(overwrite=True, confirm=answers))
    assert forced.ok and answers.asked and "overwriting" in answers.asked[0][0]
    assert dst.describe_certificate(certificateId=cert)["certificateDescription"]["status"] == "ACTIVE"
    assert _policy(dst, "device")["Statement"][0]["Effect"] == "Allow"


def _retamper(location: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """What a writer of the vault can do: change registry.json and recompute its digest."""
    registry = location / "registry.json"
    doc = json.loads(registry.read_text())
    edit(doc)
    data = (json.dumps(doc, indent=2) + "\n").encode()
    registry.write_bytes(data)
    manifest = json.loads((location / "manifest.json").read_text())
    manifest["files"]["registry.json"] = hashlib.sha256(data).hexdigest()
    (location / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


@pytest.mark.parametrize("tamper", ["revive", "widen", "drop-digest"])
def test_a_tampered_backup_is_refused_before_any_write(ctx: AwsContext, iot: IotFactory, tmp_path: Path,
                                                       signing_key: str, tamper: str) -> None:
    """Before: a REVOKED certificate came back ACTIVE and a policy widened to iot:* on * was restored as
    written (digest recomputed), and the check was skipped without the manifest's `files` entry."""
    src = iot(SRC)
    seed(src, 4, group_policy=False)
    result = backup_region(ctx, "dev", SRC, tmp_path, now=T0)
    location = Path(result.location)

    def revive(doc: dict[str, Any]) -> None:
        for c in doc["certificates"]:
            c["status"] = "ACTIVE"

    def widen(doc: dict[str, Any]) -> None:
        for p in doc["policies"]:
            p["document"] = json.dumps({"Version": "2012-10-17",
                                        "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]})

    if tamper == "drop-digest":
        manifest = json.loads((location / "manifest.json").read_text())
        manifest["files"] = {}
        (location / "manifest.json").write_text(json.dumps(manifest))
    else:
        _retamper(location, revive if tamper == "revive" else widen)
    with pytest.raises(InputRejected, match="signature does not verify"):
        restore_registry(ctx, tmp_path, THIRD, rate=10_000)
    empty = read_snapshot(iot(THIRD), pems=False)
    assert (empty.things, empty.policies, empty.certificates) == ((), (), ())
    (location / "manifest.sig").unlink()
    with pytest.raises(GuardRefused, match="not signed"):
        restore_registry(ctx, tmp_path, THIRD, rate=10_000)
    assert read_snapshot(iot(THIRD), pems=False).things == ()


def test_a_swapped_pem_is_never_registered(iot: IotFactory, tmp_path: Path) -> None:
    """Before: a PEM swapped in a snapshot was registered ACTIVE before its id was checked, and stayed."""
    src, third = iot(SRC), iot(THIRD)
    seed(src, 2, group_policy=False)
    snapshot = read_snapshot(src)
    intruder = make_pem("intruder", 4242)
    victim = snapshot.certificates[0]
    swapped = replace(snapshot, certificates=(replace(victim, pem=intruder), *snapshot.certificates[1:]))
    assert certificate_id(victim.pem or "") == victim.id  # the local id is AWS's id
    result = backup(swapped, {}, tmp_path, env="dev", now=T0)
    with pytest.raises(InputRejected, match="PEM has id"):
        load_backup(result.location)

    report = apply_sync(plan_sync(swapped, read_snapshot(third, pems=False)), third, None)
    assert [e.code for e in report.errors] == ["CertificateIdMismatch"]
    ids = {c["certificateId"] for c in third.list_certificates()["certificates"]}
    assert certificate_id(intruder) not in ids and victim.id not in ids


def test_a_backup_destination_outside_residency_is_exit_2(iot: IotFactory, s3: Callable[[str], Any],
                                                         cli_run: Callable[..., Result], tmp_path: Path,
                                                         signing_key: str) -> None:
    """Before: ORCHESTRATE_BACKUP_DEST=s3://bucket-in-us-east-1/… was written."""
    seed(iot(SRC), 2, group_policy=False)
    s3("us-east-1").create_bucket(Bucket="bucket-in-us-east-1")
    result = cli_run("registry", "backup", "--region", SRC, "--skip-stack-state",
                     "--dest", "s3://bucket-in-us-east-1/registry")
    assert result.exit_code == 2 and "outside residency" in result.stderr
    assert s3("us-east-1").list_objects_v2(Bucket="bucket-in-us-east-1").get("KeyCount", 0) == 0
    blocked = tmp_path / "a-file"  # as root, permissions do not stop a write: a file in the path does
    blocked.write_text("not a directory")
    result = cli_run("registry", "backup", "--region", SRC, "--skip-stack-state", "--dest", str(blocked / "x"))
    assert result.exit_code == 2 and "not a directory that can be written" in result.stderr


# -- checkpoints ----------------------------------------------------------------------------------
def test_a_checkpoint_is_not_trusted_against_a_changed_destination(iot: IotFactory, tmp_path: Path) -> None:
    """Before: after a failed run and a changed destination, a re-run reported ok with things missing;
    after the destination was rebuilt, every re-run failed with ResourceNotFound."""
    src, dst = iot(SRC), iot(DST)
    seed(src, 8, group_policy=False)
    path = tmp_path / "checkpoint.json"
    faults = FaultInjector(dst, rate=1.0, seed=4, only={"AttachThingPrincipal"}, faults=("invalid",))
    failed = sync_clients(src, dst, SyncOptions(checkpoint_path=path, **FAST))
    assert not failed.ok and path.exists()
    assert any(k.startswith("thing create ") for k in Checkpoint.saved(path)["done"])
    faults.enabled = False
    fresh = iot(DST)
    for name in (thing_name(0), thing_name(1), thing_name(2)):  # the destination changed meanwhile
        fresh.delete_thing(thingName=name)

    again = sync_clients(src, fresh, SyncOptions(checkpoint_path=path, **FAST))

    assert again.ok, again.errors
    assert again.resumed and again.skipped_from_checkpoint == 0
    assert read_snapshot(iot(DST), pems=False).listing() == read_snapshot(iot(SRC), pems=False).listing()
    assert not path.exists()


def test_an_expired_checkpoint_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    now = [1_000_000.0]
    cp = Checkpoint(path, src_region="a", dst_region="b", clock=lambda: now[0])
    cp.bind(["k1", "k2"])
    cp.mark_done("k1")
    cp.flush()
    saved = Checkpoint.saved(path)
    assert saved["run"] and saved["plan"] and saved["written_at"] == now[0]
    assert Checkpoint(path, src_region="a", dst_region="b", clock=lambda: now[0] + 60).is_done("k1")
    other_plan = Checkpoint(path, src_region="a", dst_region="b", clock=lambda: now[0] + 60)
    other_plan.bind(["k1", "k3"])
    assert not other_plan.is_done("k1") and other_plan.dropped == 1
    late = Checkpoint(path, src_region="a", dst_region="b", clock=lambda: now[0] + 2 * 86_400)
    assert not late.resumed and not late.is_done("k1")


# -- secrets in per-operation errors ------------------------------------------------------------------
def test_aws_error_messages_are_scrubbed_where_the_report_is_built(iot: IotFactory, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: an error echoing a key pair, the passphrase, a ghp_ token and a PEM reached stdout, --json,
    the lifecycle state file and the replication Command's stdout."""
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("correct horse battery staple\n")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(passphrase_file))
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "runtime-token-0123456789abcdef")
    secret = ("AKIAABCDEFGHIJKLMNOP aws_secret_access_key=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY "
              "correct horse battery staple ghp_" + "a" * 36 + " runtime-token-0123456789abcdef "
              "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----")
    src, dst = iot(SRC), iot(DST)
    seed(src, 1, group_policy=False)

    def echo(request: Any, event_name: str, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        from tests.ops.registry_world import _Raw

        body = json.dumps({"message": f"refused: {secret}"}).encode()
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "InvalidRequestException:",
                                              "Content-Type": "application/json"}, _Raw(body))

    dst.meta.events.register("before-send.iot.CreateThing", echo)
    report = sync_clients(src, dst, SyncOptions(**FAST))
    text = json.dumps(report.to_json())
    assert report.errors and "refused" in text
    for leaked in ("AKIAABCDEFGHIJKLMNOP", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY", "correct horse",
                   "ghp_aaaa", "runtime-token", "MIIEpAIBAAKCAQEA"):
        assert leaked not in text, leaked


def test_an_hmac_key_from_secrets_manager_signs_and_verifies(ctx: AwsContext, iot: IotFactory, tmp_path: Path) -> None:
    from orchestrator.aws import client

    seed(iot(SRC), 2, group_policy=False)
    secrets = client(ctx, "secretsmanager", SRC)
    right = secrets.create_secret(Name="backup-hmac", SecretString="k" * 48)["ARN"]
    wrong = secrets.create_secret(Name="other-hmac", SecretString="w" * 48)["ARN"]
    backup_region(ctx, "dev", SRC, tmp_path, now=T0, signing_key=f"secretsmanager:{right}")
    with pytest.raises(InputRejected, match="signature does not verify"):
        restore_registry(ctx, tmp_path, THIRD, rate=10_000, signing_key=f"secretsmanager:{wrong}")
    assert read_snapshot(iot(THIRD), pems=False).things == ()
    assert restore_registry(ctx, tmp_path, THIRD, rate=10_000, signing_key=f"secretsmanager:{right}").ok
    short = secrets.create_secret(Name="short-hmac", SecretString="too short")["ARN"]
    with pytest.raises(InputRejected, match="at least 32 bytes"):
        backup_region(ctx, "dev", SRC, tmp_path, signing_key=f"secretsmanager:{short}")
