"""Device shadows (classic and named) through sync, backup and restore, against a real moto server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry import (
    SyncOptions,
    SyncReport,
    backup_region,
    plan_clients_sync,
    restore_registry,
    sync_clients,
)
from orchestrator.registry.calls import Caller
from orchestrator.registry.snapshot import read_shadows
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.registry_world import seed, thing_name

FAST = {"rate": 10_000.0}
IotFactory = Callable[[str], Any]


@pytest.fixture
def data(ctx: AwsContext) -> Callable[[str], Any]:
    """data(region): an iot-data (Device Shadow) client on the moto server."""
    return lambda region: client(ctx, "iot-data", region, own_retries=True, max_pool_connections=16)


def put(data_client: Any, thing: str, state: dict[str, Any], name: str = "") -> None:
    kwargs: dict[str, Any] = {"thingName": thing, "payload": json.dumps({"state": state}).encode()}
    if name:
        kwargs["shadowName"] = name
    data_client.update_thing_shadow(**kwargs)


def shadows(data_client: Any, things: list[str]) -> dict[str, tuple[str | None, str | None]]:
    found = read_shadows(Caller(data_client), things)
    return {sh.key: (sh.desired, sh.reported) for sh in found}


def seed_shadows(data_client: Any, n: int) -> list[str]:
    things = [thing_name(i) for i in range(n)]
    for i, thing in enumerate(things):
        put(data_client, thing, {"desired": {"led": "on", "rate": i}, "reported": {"led": "off", "fw": "1.2"}})
        put(data_client, thing, {"desired": {"interval": 30}, "reported": {"interval": 60}}, name="config")
    return things


def sync(src: Any, dst: Any, src_data: Any, dst_data: Any, **options: Any) -> SyncReport:
    return sync_clients(src, dst, SyncOptions(**{**FAST, **options}), src_data=src_data, dst_data=dst_data)


def test_classic_and_named_shadows_are_synced_and_an_unchanged_one_costs_no_write(
        iot: IotFactory, data: Callable[[str], Any]) -> None:
    seed(iot(SRC), 4)
    things = seed_shadows(data(SRC), 4)

    first = sync(iot(SRC), iot(DST), data(SRC), data(DST))
    assert first.ok, first.errors
    assert first.counts["shadow"]["update"] == 8  # one classic + one named per thing
    assert shadows(data(DST), things) == shadows(data(SRC), things)
    assert json.loads(shadows(data(DST), things)[f"{things[0]}/config"][0]) == {"interval": 30}
    assert first.calls_by_api["update_thing_shadow"] == 8

    second = sync(iot(SRC), iot(DST), data(SRC), data(DST))
    assert second.ok and second.write_calls == 0
    assert "update_thing_shadow" not in second.calls_by_api


def test_a_changed_shadow_is_patched_so_keys_removed_in_the_source_go(
        iot: IotFactory, data: Callable[[str], Any]) -> None:
    seed(iot(SRC), 2)
    things = seed_shadows(data(SRC), 2)
    assert sync(iot(SRC), iot(DST), data(SRC), data(DST)).ok
    put(data(SRC), things[0], {"desired": {"rate": None, "led": "blink"}})  # rate removed, led changed

    report = sync(iot(SRC), iot(DST), data(SRC), data(DST))
    assert report.ok and report.counts["shadow"]["update"] == 1
    desired = json.loads(shadows(data(DST), things)[f"{things[0]}/$classic"][0] or "{}")
    assert desired == {"led": "blink"}
    assert shadows(data(DST), things) == shadows(data(SRC), things)


def test_no_shadows_leaves_them_alone(iot: IotFactory, data: Callable[[str], Any]) -> None:
    seed(iot(SRC), 2)
    things = seed_shadows(data(SRC), 2)
    report = sync(iot(SRC), iot(DST), data(SRC), data(DST), shadows=False)
    assert report.ok and report.counts["shadow"]["update"] == 0
    assert not any("shadow" in api for api in report.calls_by_api)
    assert shadows(data(DST), things) == {}


def test_only_things_that_exist_in_the_destination_get_shadows(iot: IotFactory, data: Callable[[str], Any]) -> None:
    """A thing the destination refuses to create gets no shadow (no write to a missing thing)."""
    from tests.ops.registry_world import FaultInjector

    seed(iot(SRC), 3)
    things = seed_shadows(data(SRC), 3)
    dst = iot(DST)
    FaultInjector(dst, rate=1.0, seed=1, only={"CreateThing"}, faults=("invalid",))
    report = sync(iot(SRC), dst, data(SRC), data(DST))
    assert not report.ok
    assert report.counts["shadow"]["update"] == 0
    assert shadows(data(DST), things) == {}
    assert all(not e.op.startswith("shadow") for e in report.errors)


def test_dry_run_counts_shadow_updates_and_writes_nothing(iot: IotFactory, data: Callable[[str], Any]) -> None:
    seed(iot(SRC), 2)
    things = seed_shadows(data(SRC), 2)
    summary = plan_clients_sync(iot(SRC), iot(DST), SyncOptions(**FAST), src_data=data(SRC), dst_data=data(DST))
    assert summary.counts["shadow"]["update"] == 4
    assert shadows(data(DST), things) == {}


def test_shadows_round_trip_through_backup_and_restore(ctx: AwsContext, iot: IotFactory,
                                                       data: Callable[[str], Any], tmp_path: Path) -> None:
    seed(iot(SRC), 3)
    things = seed_shadows(data(SRC), 3)
    result = backup_region(ctx, "dev", SRC, tmp_path / "b")
    assert result.manifest.counts["shadows"] == 6

    report = restore_registry(ctx, tmp_path / "b", THIRD, env="dev", region=SRC, rate=10_000)
    assert report.ok, report.errors
    assert report.counts["shadow"]["update"] == 6
    assert shadows(data(THIRD), things) == shadows(data(SRC), things)

    again = restore_registry(ctx, tmp_path / "b", THIRD, env="dev", region=SRC, rate=10_000)
    assert again.ok and again.write_calls == 0  # restored shadows equal the backup: no write

    bare = backup_region(ctx, "dev", SRC, tmp_path / "bare", shadows=False)
    assert bare.manifest.counts["shadows"] == 0


def test_registry_sync_cli_syncs_shadows_and_reports_calls_per_api(
        ctx: AwsContext, iot: IotFactory, data: Callable[[str], Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from orchestrator.cli.main import cli

    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "dev.topology.yaml").write_text(
        f"domain: iot.example.com\nhosted_zone: example.com\nprimary: {SRC}\nsecondaries: [{DST}]\n"
        f"routing: failover\nresidency: [{SRC}, {DST}]\nquotas:\n  RegisterCertificateWithoutCA: 200\n"
        "  ListThingPrincipals: 200\n  DescribeCertificate: 200\n  GetPolicy: 200\n  CreatePolicy: 200\n")
    monkeypatch.chdir(tmp_path)
    seed(iot(SRC), 3)
    things = seed_shadows(data(SRC), 3)
    result = CliRunner().invoke(cli, ["registry", "sync", "--from", SRC, "--to", DST, "--json",
                                      "--endpoint-url", ctx.endpoint_url or "", "--quota", "ListThings=50"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["counts"]["shadow"]["update"] == 6
    assert doc["calls_by_api"]["update_thing_shadow"] == 6 and doc["calls_by_api"]["list_thing_principals"] >= 3
    assert shadows(data(DST), things) == shadows(data(SRC), things)
    assert (tmp_path / ".orchestrate" / "sync" / f"dev-{SRC}-{DST}.versions.json").exists()

    skipped = CliRunner().invoke(cli, ["registry", "sync", "--from", SRC, "--to", DST, "--json", "--no-shadows",
                                       "--endpoint-url", ctx.endpoint_url or ""])
    assert skipped.exit_code == 0, skipped.output
    doc = json.loads(skipped.stdout)
    assert doc["shadows"] is False and not any("shadow" in api for api in doc["calls_by_api"])
