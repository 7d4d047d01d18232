"""`registry verify`: two regions compared kind by kind against a real moto server; read-only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.aws import AwsContext, client
from orchestrator.registry import SyncOptions, sync_clients, verify_registry
from orchestrator.registry.calls import Caller
from orchestrator.registry.plane import KINDS as PLANE_KINDS
from orchestrator.registry.plane import sync_plane
from orchestrator.registry.verify import VERIFY_KINDS
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.registry_world import CallLog, make_pem, seed, thing_name

IotFactory = Callable[[str], Any]
N = 6


@pytest.fixture
def data(ctx: AwsContext) -> Callable[[str], Any]:
    return lambda region: client(ctx, "iot-data", region, own_retries=True, max_pool_connections=16)


def put_shadow(data_client: Any, thing: str, state: dict[str, Any], name: str = "") -> None:
    kwargs: dict[str, Any] = {"thingName": thing, "payload": json.dumps({"state": state}).encode()}
    if name:
        kwargs["shadowName"] = name
    data_client.update_thing_shadow(**kwargs)


@pytest.fixture
def synced(iot: IotFactory, data: Callable[[str], Any]) -> Any:
    """A seeded source (with classic and named shadows) and a destination a clean sync made equal."""
    world = seed(iot(SRC), N, group_policy=False)
    for i in range(3):
        put_shadow(data(SRC), thing_name(i), {"desired": {"led": "on"}, "reported": {"led": "off"}})
        put_shadow(data(SRC), thing_name(i), {"reported": {"fw": "1"}}, name="config")
    report = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000.0), src_data=data(SRC), dst_data=data(DST))
    assert report.ok and report.applied > 0
    assert sync_plane(Caller(iot(SRC)), Caller(iot(DST))).ok  # `registry sync` carries it after the fleet path
    return world


def check(ctx: AwsContext, **kw: Any) -> Any:
    return verify_registry(ctx, SRC, DST, **kw)


def test_a_clean_sync_verifies_as_parity_and_verify_writes_nothing(ctx: AwsContext, iot: IotFactory,
                                                                   synced: Any) -> None:
    report = check(ctx)
    assert report.equal, report.lines()
    assert [k.kind for k in report.kinds] == [*VERIFY_KINDS, *PLANE_KINDS]
    assert report.kind("things").in_from == report.kind("things").in_to == N + 1
    assert report.kind("thing_principals").in_to == N
    assert report.kind("shadows").in_to == 6
    assert report.kind("policies").in_from == 3  # the pinned one compares after the region rewrite
    assert not any(api.startswith(("create", "attach", "update", "delete", "register", "detach", "add"))
                   for api in report.calls_by_api)
    # one ListThingPrincipals per thing and region: the one per-thing registry read
    assert report.calls_by_api["list_thing_principals"] == 2 * (N + 1)


@pytest.mark.parametrize("kind", ["thing_types", "thing_groups", "things", "group_membership", "certificates",
                                  "thing_principals", "policies", "policy_attachments", "shadows"])
def test_each_kind_difference_is_found(ctx: AwsContext, iot: IotFactory, data: Callable[[str], Any],
                                       synced: Any, kind: str) -> None:
    dst = iot(DST)
    name = thing_name(3)
    cert = synced.cert_ids[name]
    arn = dst.describe_certificate(certificateId=cert)["certificateDescription"]["certificateArn"]
    change: dict[str, Callable[[], None]] = {
        "thing_types": lambda: dst.create_thing_type(thingTypeName="extra-type"),
        "thing_groups": lambda: dst.update_thing_group(thingGroupName="fleet", thingGroupProperties={
            "attributePayload": {"attributes": {"tier": "changed"}, "merge": False}}),
        "things": lambda: dst.update_thing(thingName=name, attributePayload={"attributes": {"serial": "x"},
                                                                            "merge": True}),
        "group_membership": lambda: dst.remove_thing_from_thing_group(thingGroupName="ops", thingName=name),
        "certificates": lambda: dst.update_certificate(certificateId=cert, newStatus="INACTIVE"),
        "thing_principals": lambda: dst.detach_thing_principal(thingName=name, principal=arn),
        "policies": lambda: dst.create_policy_version(policyName="device", setAsDefault=True, policyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]})),
        "policy_attachments": lambda: dst.detach_policy(policyName="device", target=arn),
        "shadows": lambda: put_shadow(data(DST), thing_name(0), {"desired": {"led": "off"}}),
    }
    change[kind]()
    report = check(ctx, first=3)
    assert not report.equal
    assert report.kind(kind).differences >= 1, report.lines()
    others = {k.kind: k.differences for k in report.kinds if k.kind != kind and k.differences}
    assert others == {}, others
    assert report.kind(kind).first  # named, not only counted


def test_json_counts_first_differences_and_exit_codes(ctx: AwsContext, iot: IotFactory, synced: Any,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli.main import cli

    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "dev.topology.yaml").write_text(
        f"domain: iot.example.com\nhosted_zone: example.com\nprimary: {SRC}\nsecondaries: [{DST}]\n"
        f"routing: failover\nresidency: [{SRC}, {DST}]\n")
    monkeypatch.chdir(tmp_path)
    url = ctx.endpoint_url or ""
    ok = CliRunner().invoke(cli, ["registry", "verify", "--from", SRC, "--to", DST, "--json", "--endpoint-url", url])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["kind"] == "registry-verify" and doc["ok"] is True and doc["differences"] == 0
    assert set(doc["kinds"]) == {*VERIFY_KINDS, *PLANE_KINDS} and doc["write_calls"] == 0
    record = json.loads((tmp_path / ".orchestrate" / "sync" / f"dev-{SRC}-{DST}.verified.json").read_text())
    assert record["ok"] is True and record["source"] == "registry verify"

    dst = iot(DST)
    for i in range(4):  # four things the source does not have: counted all, named up to --first
        dst.create_thing(thingName=f"stray-{i}")
    bad = CliRunner().invoke(cli, ["registry", "verify", "--from", SRC, "--to", DST, "--json", "--first", "2",
                                   "--endpoint-url", url])
    assert bad.exit_code == 1, bad.output
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False and doc["kinds"]["things"]["only_in_to"] == 4
    assert doc["kinds"]["things"]["first"] == [f"stray-0: only in {DST}", f"stray-1: only in {DST}"]
    record = json.loads((tmp_path / ".orchestrate" / "sync" / f"dev-{SRC}-{DST}.verified.json").read_text())
    assert record["ok"] is False and record["by_kind"] == {"things": 4}

    text = CliRunner().invoke(cli, ["registry", "verify", "--from", SRC, "--to", DST, "--endpoint-url", url])
    assert text.exit_code == 1 and "DIFFERENT: 4 differences" in text.output and "stray-0" in text.output

    for args in (["--from", SRC, "--to", SRC], ["--from", SRC, "--to", THIRD], ["--from", SRC]):
        log = CallLog(iot(SRC))
        refused = CliRunner().invoke(cli, ["registry", "verify", *args, "--endpoint-url", url])
        assert refused.exit_code == 2, (args, refused.output)
        assert log.calls == {}


def test_a_revoked_certificate_and_a_new_default_policy_version_in_the_source_are_differences(
        ctx: AwsContext, iot: IotFactory, synced: Any) -> None:
    """Tightening in the primary that has not reached the secondary is reported, not hidden."""
    src = iot(SRC)
    src.update_certificate(certificateId=synced.cert_ids[thing_name(0)], newStatus="REVOKED")
    src.create_policy_version(policyName="device", setAsDefault=True, policyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}))
    cert = src.register_certificate_without_ca(certificatePem=make_pem("late", 4242), status="ACTIVE")
    report = check(ctx, shadows=False)
    assert report.kind("certificates").differ == 1 and report.kind("certificates").only_in_from == 1
    assert f"{synced.cert_ids[thing_name(0)]}: status REVOKED vs ACTIVE" in report.kind("certificates").first
    assert f"{cert['certificateId']}: only in {SRC}" in report.kind("certificates").first
    assert report.kind("policies").first == ("device: default version's document differs",)
    assert report.kind("shadows").in_from == 0 and not report.shadows
