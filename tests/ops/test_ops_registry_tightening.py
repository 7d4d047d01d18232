"""Security tightening reaches the secondary without --prune, incrementally and with --full.

Before (issue 19, item 2): "nothing is removed without --prune" kept in the destination a policy
detached from a certificate, a certificate detached from a thing, a thing taken out of a group
and the older, broader policy versions; after a failover a device had back what it had lost.
Now each is carried by every sync; --prune still guards deleting things and certificates.

moto never increments thing versions: the clients go through `tests/ops/versioned.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from orchestrator.registry import SyncOptions, SyncReport, read_snapshot, sync_clients
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import device_policy, make_pem, seed, thing_name
from tests.ops.test_ops_registry_safety import cli_run  # noqa: F401 (the CLI fixture of the safety tests)
from tests.ops.versioned import ThingVersions

IotFactory = Callable[[str], Any]
N = 8
MODES = ["incremental", "full"]
NARROW = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}]})


@pytest.fixture
def viot(iot: IotFactory) -> IotFactory:
    versions = ThingVersions()
    return lambda region: versions.install(iot(region))


@pytest.fixture
def synced(viot: IotFactory, tmp_path: Path) -> Callable[..., SyncReport]:
    """Seeds the source, syncs it once (recording versions) and returns `again(mode)`: the next sync,
    incremental (the version record) or --full."""
    seed(viot(SRC), N)
    state = tmp_path / "versions.json"
    first = sync_clients(viot(SRC), viot(DST), SyncOptions(rate=10_000.0, state_path=state))
    assert first.ok, first.errors

    def again(mode: str) -> SyncReport:
        report = sync_clients(viot(SRC), viot(DST), SyncOptions(rate=10_000.0, state_path=state,
                                                                full=mode == "full"))
        assert report.ok, report.errors
        assert not report.prune
        return report

    return again


def cert_arn(client: Any, cert_id: str) -> str:
    return client.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]


def cert_id_of(client: Any, thing: str) -> str:
    [arn] = client.list_thing_principals(thingName=thing)["principals"]
    return arn.rsplit("/", 1)[1]


def policies_of(client: Any, cert_id: str) -> set[str]:
    return {p["policyName"] for p in client.list_attached_policies(target=cert_arn(client, cert_id))["policies"]}


def principals_of(client: Any, thing: str) -> list[str]:
    return [a.rsplit("/", 1)[1] for a in client.list_thing_principals(thingName=thing)["principals"]]


def deletes(report: SyncReport) -> dict[str, int]:
    return {kind: ops["delete"] for kind, ops in report.counts.items() if ops["delete"]}


def parity(viot: IotFactory) -> None:
    src, dst = read_snapshot(viot(SRC), pems=False), read_snapshot(viot(DST), pems=False)
    assert (src.thing_principals, src.policy_targets) == (dst.thing_principals, dst.policy_targets)
    assert [(t.name, t.groups) for t in src.things] == [(t.name, t.groups) for t in dst.things]
    assert [(c.id, c.status) for c in src.certificates] == [(c.id, c.status) for c in dst.certificates]


@pytest.mark.parametrize("mode", MODES)
def test_a_policy_detached_from_a_certificate_is_detached(viot: IotFactory, synced: Callable[..., SyncReport],
                                                          mode: str) -> None:
    src = viot(SRC)
    cert = cert_id_of(src, thing_name(4))
    src.detach_policy(policyName="device", target=cert_arn(src, cert))

    report = synced(mode)

    assert deletes(report) == {"policy_attachment": 1}
    assert policies_of(viot(DST), cert) == {"telemetry-pinned"}
    parity(viot)


@pytest.mark.parametrize("mode", MODES)
def test_a_policy_detached_from_a_thing_group_is_detached(viot: IotFactory, synced: Callable[..., SyncReport],
                                                          mode: str) -> None:
    src = viot(SRC)
    src.detach_policy(policyName="ops-policy", target=src.describe_thing_group(thingGroupName="ops")["thingGroupArn"])

    report = synced(mode)

    assert deletes(report) == {"policy_attachment": 1}
    assert viot(DST).list_targets_for_policy(policyName="ops-policy")["targets"] == []


@pytest.mark.parametrize("mode", MODES)
def test_a_certificate_detached_in_a_rotation_is_detached(viot: IotFactory, synced: Callable[..., SyncReport],
                                                          mode: str) -> None:
    """The usual shape of a detach: a new certificate for the thing, the old one detached (and left
    registered: it is not deleted without --prune)."""
    src = viot(SRC)
    old = cert_id_of(src, thing_name(5))
    new = src.register_certificate_without_ca(certificatePem=make_pem("rotated", 4242), status="ACTIVE")
    src.attach_thing_principal(thingName=thing_name(5), principal=new["certificateArn"])
    src.detach_thing_principal(thingName=thing_name(5), principal=cert_arn(src, old))

    report = synced(mode)

    assert deletes(report) == {"thing_principal": 1}
    assert principals_of(viot(DST), thing_name(5)) == [new["certificateId"]]
    assert viot(DST).describe_certificate(certificateId=old)["certificateDescription"]["status"] == "ACTIVE"
    parity(viot)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_a_certificate_deactivated_or_revoked_and_detached_is_both_here(
        viot: IotFactory, synced: Callable[..., SyncReport], mode: str, status: str) -> None:
    """The thing's version does not move: the incremental pass finds the thing through the
    certificate whose status changed (ListPrincipalThings in the destination)."""
    src = viot(SRC)
    cert = cert_id_of(src, thing_name(6))
    src.update_certificate(certificateId=cert, newStatus=status)
    src.detach_thing_principal(thingName=thing_name(6), principal=cert_arn(src, cert))

    report = synced(mode)

    assert report.counts["certificate"]["update"] == 1 and deletes(report) == {"thing_principal": 1}
    dst = viot(DST)
    assert dst.describe_certificate(certificateId=cert)["certificateDescription"]["status"] == status
    assert principals_of(dst, thing_name(6)) == []
    parity(viot)


def test_a_plain_detach_is_carried_by_the_full_pass(viot: IotFactory, synced: Callable[..., SyncReport]) -> None:
    """A detach that changes nothing else moves no version and no certificate listing: the
    incremental pass cannot see it (no listing shows it), the --full pass carries it."""
    src = viot(SRC)
    cert = cert_id_of(src, thing_name(7))
    src.detach_thing_principal(thingName=thing_name(7), principal=cert_arn(src, cert))

    assert deletes(synced("incremental")) == {}
    report = synced("full")
    assert deletes(report) == {"thing_principal": 1}
    assert principals_of(viot(DST), thing_name(7)) == []
    parity(viot)


@pytest.mark.parametrize("mode", MODES)
def test_a_thing_taken_out_of_a_group_is_taken_out(viot: IotFactory, synced: Callable[..., SyncReport],
                                                   mode: str) -> None:
    """`ops` grants ops-policy to its members: membership is a permission."""
    viot(SRC).remove_thing_from_thing_group(thingGroupName="ops", thingName=thing_name(3))

    report = synced(mode)

    assert deletes(report) == {"group_membership": 1}
    groups = {g["groupName"] for g in viot(DST).list_thing_groups_for_thing(thingName=thing_name(3))["thingGroups"]}
    assert "ops" not in groups
    parity(viot)


def versions_of(client: Any, policy: str) -> list[tuple[bool, dict[str, Any]]]:
    out = []
    for v in client.list_policy_versions(policyName=policy)["policyVersions"]:
        got = client.get_policy_version(policyName=policy, policyVersionId=v["versionId"])
        out.append((bool(v["isDefaultVersion"]), json.loads(got["policyDocument"])))
    return sorted(out, key=lambda x: json.dumps(x, sort_keys=True))


@pytest.mark.parametrize("mode", MODES)
def test_a_narrowed_policy_is_narrowed_and_its_old_versions_go(viot: IotFactory, synced: Callable[..., SyncReport],
                                                               mode: str) -> None:
    """The destination already holds AWS's maximum of five versions (four old, broader ones made
    there). The source narrows `device` (a new default) and deletes the old version. The sync must
    make room before creating the new default (AWS: at most five) and delete the replaced default
    only after (AWS refuses to delete the default version)."""
    dst = viot(DST)
    for i in range(4):
        broad = json.loads(device_policy())
        broad["Statement"].append({"Effect": "Allow", "Action": f"iot:Receive{i}", "Resource": "*"})
        dst.create_policy_version(policyName="device", policyDocument=json.dumps(broad), setAsDefault=False)
    assert len(dst.list_policy_versions(policyName="device")["policyVersions"]) == 5
    src = viot(SRC)
    src.create_policy_version(policyName="device", policyDocument=NARROW, setAsDefault=True)
    src.delete_policy_version(policyName="device", policyVersionId="1")

    report = synced(mode)

    assert report.counts["policy"]["update"] == 1
    assert deletes(report) == {"policy_version": 5}
    assert "create_policy_version" in report.calls_by_api
    assert versions_of(dst, "device") == versions_of(src, "device") == [(True, json.loads(NARROW))]
    assert synced(mode).write_calls == 0  # nothing left to do


@pytest.mark.parametrize("mode", MODES)
def test_versions_the_source_keeps_are_kept(viot: IotFactory, synced: Callable[..., SyncReport], mode: str) -> None:
    src = viot(SRC)
    src.create_policy_version(policyName="device", policyDocument=NARROW, setAsDefault=True)

    report = synced(mode)

    assert report.counts["policy"]["update"] == 1 and deletes(report) == {}
    assert versions_of(viot(DST), "device") == versions_of(src, "device")
    src.delete_policy_version(policyName="device", policyVersionId="1")
    assert deletes(synced(mode)) == {"policy_version": 1}
    assert versions_of(viot(DST), "device") == versions_of(src, "device")


# -- removal stays behind --prune ------------------------------------------------------------------
def test_deleting_devices_still_needs_prune_and_tightening_never_asks(iot: IotFactory,
                                                                       cli_run: Callable[..., Result]) -> None:  # noqa: F811
    src, dst = iot(SRC), iot(DST)
    seed(src, N, group_policy=False)
    assert cli_run("registry", "sync", "--from", SRC, "--to", DST).exit_code == 0
    # a device decommissioned in the source (certificate revoked and detached, thing deleted) and a
    # policy detached from another device's certificate
    gone = thing_name(0)
    gone_cert = cert_id_of(src, gone)
    src.update_certificate(certificateId=gone_cert, newStatus="REVOKED")
    src.detach_policy(policyName="device", target=cert_arn(src, gone_cert))
    src.detach_policy(policyName="telemetry-pinned", target=cert_arn(src, gone_cert))
    src.detach_thing_principal(thingName=gone, principal=cert_arn(src, gone_cert))
    src.delete_thing(thingName=gone)
    other = cert_id_of(src, thing_name(3))
    src.detach_policy(policyName="device", target=cert_arn(src, other))

    # without --prune, no terminal, no --yes: the tightening is carried, nothing is deleted
    result = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["counts"]["thing"]["delete"] == 0 and doc["counts"]["certificate"]["delete"] == 0
    assert doc["counts"]["certificate"]["update"] == 1
    assert doc["counts"]["policy_attachment"]["delete"] == 3  # the gone device's certificate keeps none
    assert gone in {t["thingName"] for t in dst.list_things()["things"]}
    assert dst.describe_certificate(certificateId=gone_cert)["certificateDescription"]["status"] == "REVOKED"
    assert policies_of(dst, other) == set() and policies_of(dst, gone_cert) == set()

    # deleting the thing is a removal: --prune, and its guard asks
    refused = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--prune")
    assert refused.exit_code == 4 and "delete thing " + gone in refused.stderr
    assert gone in {t["thingName"] for t in dst.list_things()["things"]}
    pruned = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--prune", "--yes", "--json")
    assert pruned.exit_code == 0, pruned.output
    counts = json.loads(pruned.stdout)["counts"]
    assert counts["thing"]["delete"] == 1 and counts["thing_principal"]["delete"] == 1
    assert gone not in {t["thingName"] for t in dst.list_things()["things"]}


def test_prune_with_only_tightening_pending_asks_nothing(iot: IotFactory, cli_run: Callable[..., Result]) -> None:  # noqa: F811
    """Before: --prune counted detachments as deletions (budget, confirmation): without --yes and
    without a terminal it refused (exit 4) and the policy stayed attached."""
    src, dst = iot(SRC), iot(DST)
    seed(src, N, group_policy=False)
    assert cli_run("registry", "sync", "--from", SRC, "--to", DST).exit_code == 0
    cert = cert_id_of(src, thing_name(4))
    src.detach_policy(policyName="device", target=cert_arn(src, cert))

    result = cli_run("registry", "sync", "--from", SRC, "--to", DST, "--prune", "--max-delete", "0")

    assert result.exit_code == 0, result.output
    assert "prune deletes" not in result.stderr
    assert policies_of(dst, cert) == {"telemetry-pinned"}
