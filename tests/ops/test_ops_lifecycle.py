"""promote-secondary, failover, failback and removing a secondary, through the CLI, against moto.

Stack operations go to the in-memory engine; what the real provider would create in AWS is
simulated into the moto server (tests/ops/provider_sim.py), so every verification step reads real
Route 53 records, S3 replication rules, IoT domain configurations and registries over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from tests.doubles import InMemoryEngine, project_copy, stable_endpoint
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.provider_sim import ProviderSimulation
from tests.ops.registry_world import seed

LIFECYCLE = {"promote-secondary", "failover", "failback"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_copy(tmp_path, monkeypatch)




@pytest.fixture
def run(project: Path, engine: InMemoryEngine, endpoint: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        deps = Deps(engine_factory=lambda app: engine)
        extra = ["--sync-rate", "500"] if args and args[0] in LIFECYCLE else []
        return CliRunner().invoke(cli, [*args, *extra, "--endpoint-url", endpoint], obj=deps,
                                  catch_exceptions=False)

    return invoke


def topology(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / "stacks" / "dev.topology.yaml").read_text())


def dns(sim: ProviderSimulation) -> list[tuple[str | None, str]]:
    return sorted((rr.get("Failover") or rr.get("Region"), rr["ResourceRecords"][0]["Value"]) for rr in sim.records())


@pytest.fixture
def live(run, iot) -> Any:  # noqa: ANN001
    """A single-region platform: the primary deployed, DNS single, a seeded registry."""
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    return seed(iot(SRC), n_things=6, group_policy=False)


def test_promote_secondary_failover_end_to_end(run, engine, sim, project, iot, live) -> None:  # noqa: ANN001
    engine.calls.clear()
    result = run("promote-secondary", "--yes", "--region", DST, "--routing", "failover")
    assert result.exit_code == 0, result.output
    # stacks in the documented order: the new region, replication, then DNS last
    # the new region, replication, DNS; then replication again: its readiness check reads the new health checks
    assert engine.ops("up") == [("up", f"dev-region-{DST}"), ("up", "dev-replication"), ("up", "dev-dns"),
                                ("up", "dev-replication")]
    topo = topology(project)
    assert topo["secondaries"] == [DST] and topo["routing"] == "failover"
    assert dns(sim) == [("PRIMARY", stable_endpoint(SRC)), ("SECONDARY", stable_endpoint(DST))]
    # the registry really arrived, with the same certificate ids
    dst_certs = {c["certificateId"] for c in iot(DST).list_certificates()["certificates"]}
    assert set(live.cert_ids.values()) <= dst_certs
    for step in ("preflight", "record-secondary", "region-stack", "registry-sync", "replication", "dns"):
        assert step in result.stdout


def test_promote_latency_routing_records_one_per_region(run, sim, live) -> None:  # noqa: ANN001
    assert run("promote-secondary", "--yes", "--region", DST, "--routing", "latency").exit_code == 0
    assert dns(sim) == [(DST, stable_endpoint(DST)), (SRC, stable_endpoint(SRC))]


def test_dry_run_touches_nothing(run, engine, project, live) -> None:  # noqa: ANN001
    before = (project / "stacks" / "dev.topology.yaml").read_text()
    engine.calls.clear()
    result = run("promote-secondary", "--yes", "--region", DST, "--dry-run", "--json")
    assert result.exit_code == 0
    steps = json.loads(result.stdout)["steps"]
    # the preflight runs (read-only); every other step is planned, with what its stacks would change
    assert [(s["step"], s["status"]) for s in steps][0] == ("preflight", "passed")
    assert all(s["status"] == "planned" for s in steps[1:])
    assert "dev-replication" in json.dumps(steps)
    assert {op for op, _ in engine.ops()} <= {"preview"}
    assert (project / "stacks" / "dev.topology.yaml").read_text() == before


def test_region_outside_residency_is_refused_before_anything(run, engine, project, live) -> None:  # noqa: ANN001
    engine.calls.clear()
    result = run("promote-secondary", "--yes", "--region", "us-east-1")
    assert result.exit_code == 2 and "outside residency" in result.stderr
    assert engine.calls == [] and topology(project)["secondaries"] == []


def test_failure_before_dns_leaves_dns_untouched_and_resumes(run, engine, sim, project, live) -> None:  # noqa: ANN001
    engine.fail_on["dev-replication"] = "AccessDenied: iam:PassRole"
    first = run("promote-secondary", "--yes", "--region", DST)
    assert first.exit_code == 1 and "AccessDenied" in first.stdout
    assert dns(sim) == [(None, stable_endpoint(SRC))]  # still the single record
    assert ("up", "dev-dns") not in engine.ops()[2:]
    del engine.fail_on["dev-replication"]
    engine.calls.clear()
    second = run("promote-secondary", "--yes", "--region", DST)
    assert second.exit_code == 0, second.output
    assert "resuming the promotion" in second.stderr
    assert engine.ops("up") == [("up", "dev-replication"), ("up", "dev-dns"),
                                ("up", "dev-replication")]  # region stack not redone


def test_failure_in_dns_puts_previous_records_back(run, engine, sim, project, live) -> None:  # noqa: ANN001
    sim.corrupt_dns_applies = 1
    result = run("promote-secondary", "--yes", "--region", DST)
    assert result.exit_code == 1, result.output
    assert "previous records restored" in result.stdout, result.stderr
    # the rollback re-applied and verified the single record of the previous topology
    assert dns(sim) == [(None, stable_endpoint(SRC))]
    assert topology(project)["routing"] == "single"
    engine.calls.clear()
    again = run("promote-secondary", "--yes", "--region", DST)
    assert again.exit_code == 0, again.output
    # DNS again, then replication (its readiness check reads the health checks DNS now has)
    assert engine.ops("up") == [("up", "dev-dns"), ("up", "dev-replication")]
    assert dns(sim) == [("PRIMARY", stable_endpoint(SRC)), ("SECONDARY", stable_endpoint(DST))]


def test_failover_and_failback(run, sim, project, iot, live) -> None:  # noqa: ANN001
    assert run("promote-secondary", "--yes", "--region", DST).exit_code == 0
    result = run("failover", "--yes", "--to", DST)
    assert result.exit_code == 0, result.output
    assert topology(project)["primary"] == DST and topology(project)["secondaries"] == [SRC]
    assert dns(sim) == [("PRIMARY", stable_endpoint(DST)), ("SECONDARY", stable_endpoint(SRC))]
    # a device provisioned during the outage, in the new primary
    iot(DST).create_thing(thingName="provisioned-during-outage")
    back = run("failback", "--yes")
    assert back.exit_code == 0, back.output
    assert topology(project)["primary"] == SRC
    assert dns(sim) == [("PRIMARY", stable_endpoint(SRC)), ("SECONDARY", stable_endpoint(DST))]
    assert "provisioned-during-outage" in {t["thingName"] for t in iot(SRC).list_things()["things"]}


def test_failover_with_unreachable_primary_says_how_stale(run, project, live, monkeypatch) -> None:  # noqa: ANN001
    assert run("promote-secondary", "--yes", "--region", DST).exit_code == 0
    from orchestrator.operations import verify

    monkeypatch.setattr(verify, "region_answers", lambda ctx, region: region != SRC)
    result = run("failover", "--yes", "--to", DST)
    assert result.exit_code == 0, result.output
    assert f"{SRC} does not answer" in result.stderr and "last sync" in result.stderr


def test_failover_refuses_unverified_or_unknown_targets(run, engine, live) -> None:  # noqa: ANN001
    engine.calls.clear()
    assert run("failover", "--yes", "--to", DST).exit_code == 2  # not a secondary
    assert run("failover", "--yes", "--to", SRC).exit_code == 2  # already primary
    assert engine.ops("up") == []


def test_removing_a_secondary_takes_dns_first(run, engine, sim, project, live) -> None:  # noqa: ANN001
    assert run("promote-secondary", "--yes", "--region", DST).exit_code == 0
    engine.calls.clear()
    result = run("destroy", "--region", DST, "--yes")
    assert result.exit_code == 0, result.output
    ops = engine.ops()
    assert ops.index(("up", "dev-dns")) < ops.index(("destroy", "dev-replication")) \
        < ops.index(("destroy", f"dev-region-{DST}"))
    # two DNS applies: the leaving record goes first (failover, primary alone), then the mode changes
    dns_applies = [(c.config["iot-platform:routing"],
                    [t["region"] for t in json.loads(c.config["iot-platform:targets"])])
                   for c in engine.calls if c.stack == "dev-dns" and c.operation == "up"]
    assert dns_applies == [("failover", [SRC]), ("single", [SRC])]
    assert dns(sim) == [(None, stable_endpoint(SRC))]
    assert topology(project)["secondaries"] == [] and topology(project)["routing"] == "single"


def test_registry_cli_sync_dry_run_then_sync_then_nothing(run, iot, live, project) -> None:  # noqa: ANN001
    path = project / "stacks" / "dev.topology.yaml"  # a sync runs between member regions only
    path.write_text(path.read_text().replace("secondaries: []", f"secondaries: [{DST}]")
                    .replace("routing: single", "routing: failover"))
    dry = run("registry", "sync", "--from", SRC, "--to", DST, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True and plan["total"] > 0
    assert iot(DST).list_things()["things"] == []
    first = run("registry", "sync", "--from", SRC, "--to", DST, "--rate", "500", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["write_calls"] > 0
    second = run("registry", "sync", "--from", SRC, "--to", DST, "--rate", "500", "--json")
    assert json.loads(second.stdout)["write_calls"] == 0


def test_registry_sync_all_secondaries_copies_the_primary_to_each(run, iot, live, project) -> None:  # noqa: ANN001
    """The scheduled job's form: from the recorded primary to every secondary, one document per pair."""
    path = project / "stacks" / "dev.topology.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(secondaries=[DST, THIRD], routing="latency", residency=[*doc["residency"], THIRD])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run("registry", "sync", "--all-secondaries", "--full", "--rate", "500", "--json")
    assert result.exit_code == 0, result.output
    docs = json.loads(result.stdout)["syncs"]
    assert [(d["from"], d["to"]) for d in docs] == [(SRC, DST), (SRC, THIRD)]
    assert all(d["ok"] and d["write_calls"] > 0 for d in docs)
    src_things = {t["thingName"] for t in iot(SRC).list_things()["things"]}
    for region in (DST, THIRD):
        assert {t["thingName"] for t in iot(region).list_things()["things"]} == src_things
    again = json.loads(run("registry", "sync", "--all-secondaries", "--rate", "500", "--json").stdout)["syncs"]
    assert [d["write_calls"] for d in again] == [0, 0]


@pytest.mark.parametrize("args, message", [
    (("--all-secondaries", "--from", SRC), "--all-secondaries replaces --from/--to"),
    (("--from", SRC), "pass --from R1 and --to R2, or --all-secondaries"),
])
def test_registry_sync_pair_forms_are_checked_before_any_call(run, iot, live, args, message) -> None:  # noqa: ANN001
    result = run("registry", "sync", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) <= 2  # the error, and its hint when there is one


def test_registry_sync_all_secondaries_of_a_single_region_env_has_nothing_to_do(run, live) -> None:  # noqa: ANN001
    result = run("registry", "sync", "--all-secondaries", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"kind": "registry-sync", "version": 1, "ok": True,
                                                              "error": None, "syncs": []}
    assert "has no secondaries: nothing to sync" in result.stderr


def test_registry_backup_restore_round_trip_through_cli(run, iot, live, tmp_path: Path, signing_key) -> None:  # noqa: ANN001
    dest = tmp_path / "backups"
    backup = run("registry", "backup", "--region", SRC, "--dest", str(dest), "--skip-stack-state", "--json")
    assert backup.exit_code == 0, backup.output
    restore = run("registry", "restore", "--region", DST, "--src", str(dest), "--rate", "500", "--json", "--yes")
    assert restore.exit_code == 0, restore.output
    src_things = {t["thingName"] for t in iot(SRC).list_things()["things"]}
    assert src_things == {t["thingName"] for t in iot(DST).list_things()["things"]}


def test_backup_and_restore_use_the_signing_key_the_home_stack_made(run, engine, iot, ctx, live,  # noqa: ANN001
                                                                     tmp_path: Path) -> None:
    """No flag, no variable: the key the programs provision beside the vault (an ECC SIGN_VERIFY key
    in the backup region, exported as `backupSigningKey`) signs and verifies."""
    from orchestrator.aws import client
    from orchestrator.engine.types import OutputValue
    from programs.contract import SIGNING_KEY_OUTPUT

    kms = client(ctx, "kms", DST)
    arn = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["Arn"]
    engine.stacks[f"dev-region-{SRC}"].outputs[SIGNING_KEY_OUTPUT] = OutputValue(f"awskms:{arn}")
    dest = tmp_path / "backups"
    backup = run("registry", "backup", "--region", SRC, "--dest", str(dest), "--skip-stack-state", "--json")
    assert backup.exit_code == 0, backup.output
    (signature,) = dest.rglob("manifest.sig")
    assert arn in signature.read_text()
    restore = run("registry", "restore", "--region", DST, "--src", str(dest), "--rate", "500", "--json", "--yes")
    assert restore.exit_code == 0, restore.output
    assert {t["thingName"] for t in iot(DST).list_things()["things"]} == \
        {t["thingName"] for t in iot(SRC).list_things()["things"]}

    del engine.stacks[f"dev-region-{SRC}"].outputs[SIGNING_KEY_OUTPUT]  # nothing provisioned, nothing named
    refused = run("registry", "backup", "--region", SRC, "--dest", str(tmp_path / "b2"), "--skip-stack-state")
    assert refused.exit_code == 2 and "signing key" in refused.stderr, refused.output


def test_registry_sync_outside_residency_is_exit_2_and_touches_nothing(run, iot, live) -> None:  # noqa: ANN001
    result = run("registry", "sync", "--from", SRC, "--to", "us-east-1")
    assert result.exit_code == 2
    assert "outside the environment's residency" in result.stderr and len(result.stderr.splitlines()) == 1
    assert iot("us-east-1").list_things()["things"] == []
