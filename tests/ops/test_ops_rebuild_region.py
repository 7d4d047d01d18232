"""rebuild-region --from-backup: the primary is down, there is no secondary; the platform is built in
another region from the signed backups in the vault, through the CLI, against moto.

The primary's outage is the strict gate's: every request signed for it has its connection closed
without an answer (tests/aws_gate.py), and is listed in `gate.refused`. Stack operations go to the
in-memory engine, whose `up` is followed by the provider simulation (DNS records in Route 53, the
region's domain configuration), so every verification reads moto over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from orchestrator.aws import AwsContext, client
from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.engine.types import OutputValue
from orchestrator.registry import read_snapshot
from orchestrator.registry.verify import compare
from programs.contract import BACKUP_OUTPUT, SIGNING_KEY_OUTPUT
from tests.aws_gate import Gate
from tests.doubles import InMemoryEngine, project_copy, stable_endpoint
from tests.ops.conftest import DST, SRC
from tests.ops.provider_sim import ProviderSimulation
from tests.ops.registry_world import seed

VAULT = "iot-dev-backups-0a1b2c"  # in the backup region (dev's backup_region is eu-central-1)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ORCHESTRATE_BACKUP_DEST", raising=False)
    monkeypatch.delenv("ORCHESTRATE_BACKUP_SIGNING_KEY", raising=False)
    return project_copy(tmp_path, monkeypatch)


@pytest.fixture
def run(project: Path, engine: InMemoryEngine, endpoint: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        deps = Deps(engine_factory=lambda app: engine)
        extra = ["--sync-rate", "500"] if args and args[0] == "rebuild-region" else []
        return CliRunner().invoke(cli, [*args, *extra, "--endpoint-url", endpoint], obj=deps,
                                  catch_exceptions=False)

    return invoke


def topology(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / "stacks" / "dev.topology.yaml").read_text())


def dns(sim: ProviderSimulation) -> list[tuple[str | None, str]]:
    return sorted((rr.get("Failover") or rr.get("Region"), rr["ResourceRecords"][0]["Value"]) for rr in sim.records())


def lifecycle_record(project: Path) -> dict[str, Any] | None:
    """The backend's record of the last lifecycle transition (the local file backend's copy)."""
    found = [p for p in (project / ".pulumi-state").rglob("dev.json") if p.parent.name == "lifecycle"]
    return json.loads(found[0].read_text()) if found else None


@pytest.fixture
def backed_up(run, engine, iot, ctx: AwsContext) -> Any:  # noqa: ANN001
    """One region, seeded, with its vault and signing key in the backup region (as the home stack's
    outputs name them), and one signed backup of its registry (and stack state) in the vault."""
    assert run("up", "--yes", "--region", SRC).exit_code == 0
    world = seed(iot(SRC), n_things=6, group_policy=False)
    client(ctx, "s3", DST).create_bucket(Bucket=VAULT, CreateBucketConfiguration={"LocationConstraint": DST})
    arn = client(ctx, "kms", DST).create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["Arn"]
    outputs = engine.stacks[f"dev-region-{SRC}"].outputs
    outputs[BACKUP_OUTPUT] = OutputValue(VAULT)
    outputs[SIGNING_KEY_OUTPUT] = OutputValue(f"awskms:{arn}")
    result = run("registry", "backup", "--json")
    assert result.exit_code == 0, result.output
    return world


def vault_keys(ctx: AwsContext) -> list[str]:
    return [o["Key"] for o in client(ctx, "s3", DST).list_objects_v2(Bucket=VAULT).get("Contents", [])]


def test_rebuild_with_the_primary_refused_completes_and_reads_back(  # noqa: PLR0913
        run, engine, sim, project, iot, ctx, gate: Gate, backed_up) -> None:  # noqa: ANN001
    before = read_snapshot(iot(SRC), pems=False)
    gate.down.add(SRC)  # the primary's outage: every request signed for it is cut off
    gate.reset_counts()
    engine.calls.clear()

    result = run("rebuild-region", "--from-backup", "--region", DST, "--yes", "--json")

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["kind"] == "rebuild-region" and doc["ok"] is True and doc["error"] is None
    assert [(s["step"], s["status"]) for s in doc["steps"]] == [
        ("region-stack", "done"), ("registry-restore", "done"), ("dns", "done"), ("record-primary", "done")]
    # docs/architecture.md's table ("Failover calls per region and service"): printed with -s
    print("rebuild-region calls:", ", ".join(f"{r}/{svc} {n}" for (r, svc), n in
                                             sorted(gate.by_region_and_service().items())))
    # the failed region: one probe, refused at once; nothing else was ever sent there
    assert [(c.region, c.service) for c in gate.refused] == [(SRC, "iot")]
    assert gate.count(region=SRC) == 0
    # the new region's stack, then DNS: nothing that joins the failed region (no replication)
    assert engine.ops("up") == [("up", f"dev-region-{DST}"), ("up", "dev-dns")]
    # the registry in the new region equals the backup: things, certificates and their status,
    # attachments, policies (region in ARNs rewritten), groups
    after = read_snapshot(iot(DST), pems=False)
    report = compare(before, after, shadows=False)
    assert report.equal, report.lines()
    assert {t.name for t in after.things} == {t.name for t in before.things} and len(after.things) >= 6
    assert {(c.id, c.status) for c in after.certificates} == {(c.id, c.status) for c in before.certificates}
    assert set(backed_up.cert_ids.values()) <= {c.id for c in after.certificates}
    # DNS points at the new region, and the roles are recorded in the file and the backend
    assert dns(sim) == [(None, stable_endpoint(DST))]
    topo = topology(project)
    assert (topo["primary"], topo["secondaries"], topo["routing"]) == (DST, [SRC], "single")
    record = lifecycle_record(project)
    assert record is not None and (record["operation"], record["status"], record["primary"]) == \
        ("rebuild", "done", DST)
    assert "commit" in doc["follow_ups"][0] and "do not run `orchestrate up --all`" in doc["follow_ups"][1]
    assert "`orchestrate failback`" in doc["follow_ups"][2]
    # `status` right after: DST primary and the only region receiving traffic; nothing sent to SRC
    gate.reset_counts()
    status = run("status", "--json")
    assert status.exit_code == 0, status.output
    rows = {r["name"]: r for r in json.loads(status.stdout)["stacks"]}
    assert (rows[f"dev-region-{DST}"]["role"], rows[f"dev-region-{DST}"]["routed"]) == ("primary", True)
    assert (rows[f"dev-region-{SRC}"]["role"], rows[f"dev-region-{SRC}"]["routed"]) == ("secondary", False)
    assert gate.refused == [] and gate.count(region=SRC) == 0
    # the next command agrees with both (no "file disagrees" refusal), and DNS stays on DST
    gate.reset_counts()
    again = run("up", "--yes", "--region", DST)
    assert again.exit_code == 0, again.output
    assert dns(sim) == [(None, stable_endpoint(DST))] and gate.refused == []


@pytest.mark.parametrize("tamper, code, message", [
    ("registry", 2, "does not match"),  # a file of the backup changed
    ("manifest", 2, "signature does not verify"),  # the manifest changed (a newer-looking time)
    ("signature", 4, "not signed"),  # written without (or stripped of) its signature
])
def test_a_tampered_or_unsigned_backup_is_refused_before_anything_is_touched(  # noqa: PLR0913
        run, engine, sim, project, iot, ctx, gate: Gate, backed_up, tamper: str, code: int,  # noqa: ANN001
        message: str) -> None:
    s3 = client(ctx, "s3", DST)
    keys = vault_keys(ctx)
    key = next(k for k in keys if k.endswith({"registry": "registry.json", "manifest": "manifest.json",
                                              "signature": "manifest.sig"}[tamper]))
    if tamper == "signature":
        s3.delete_object(Bucket=VAULT, Key=key)
    else:
        body = json.loads(s3.get_object(Bucket=VAULT, Key=key)["Body"].read())
        if tamper == "registry":
            body["things"] = body["things"][:1]
        else:
            body["created_at"] = "2099-01-01T00:00:00Z"
        s3.put_object(Bucket=VAULT, Key=key, Body=json.dumps(body).encode())
    file_before = (project / "stacks" / "dev.topology.yaml").read_text()
    gate.down.add(SRC)
    engine.calls.clear()

    result = run("rebuild-region", "--from-backup", "--region", DST, "--yes", "--json")

    assert result.exit_code == code, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) <= 3, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["error"]["exit_code"] == code
    # nothing touched: no stack, no registry write, DNS, the file and the backend's record as they were
    assert engine.ops("up") == []
    assert iot(DST).list_things()["things"] == []
    assert dns(sim) == [(None, stable_endpoint(SRC))]
    assert (project / "stacks" / "dev.topology.yaml").read_text() == file_before
    assert lifecycle_record(project) is None


def test_refused_while_the_primary_answers_unless_forced(run, engine, sim, project, iot, gate: Gate,  # noqa: ANN001
                                                         backed_up) -> None:
    engine.calls.clear()
    refused = run("rebuild-region", "--from-backup", "--region", DST, "--yes")
    assert refused.exit_code == 4, refused.output
    assert f"the primary {SRC} answers" in refused.stderr and "promote-secondary" in refused.stderr
    assert engine.ops("up") == [] and iot(DST).list_things()["things"] == []
    assert topology(project)["primary"] == SRC and dns(sim) == [(None, stable_endpoint(SRC))]

    forced = run("rebuild-region", "--from-backup", "--region", DST, "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert "rebuilding anyway (--force)" in forced.stderr
    assert dns(sim) == [(None, stable_endpoint(DST))] and topology(project)["primary"] == DST


def test_dry_run_checks_and_previews_and_touches_nothing(run, engine, sim, project, iot, gate: Gate,  # noqa: ANN001
                                                         backed_up) -> None:
    gate.down.add(SRC)
    engine.calls.clear()
    result = run("rebuild-region", "--from-backup", "--region", DST, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["steps"]
    assert (steps[0]["step"], steps[0]["status"]) == ("preflight", "passed")
    assert f"{SRC} does not answer" in steps[0]["detail"] and "verified" in steps[0]["detail"]
    assert [s["status"] for s in steps[1:]] == ["planned"] * 4
    assert f"would change dev-region-{DST}" in json.dumps(steps) and "would change dev-dns" in json.dumps(steps)
    assert {op for op, _ in engine.ops()} <= {"preview"}
    assert iot(DST).list_things()["things"] == [] and dns(sim) == [(None, stable_endpoint(SRC))]
    assert topology(project)["primary"] == SRC and lifecycle_record(project) is None


def test_a_failed_dns_step_puts_the_records_back_and_the_rerun_resumes(run, engine, sim, project, iot,  # noqa: ANN001
                                                                       gate: Gate, backed_up) -> None:
    gate.down.add(SRC)
    sim.corrupt_dns_applies = 1  # the DNS apply writes the wrong records: verification fails
    first = run("rebuild-region", "--from-backup", "--region", DST, "--yes")
    assert first.exit_code == 1, first.output
    assert "previous records restored" in first.stdout
    assert dns(sim) == [(None, stable_endpoint(SRC))] and topology(project)["primary"] == SRC
    record = lifecycle_record(project)
    assert record is not None and (record["status"], record["failed_step"]) == ("failed", "dns")
    engine.calls.clear()
    second = run("rebuild-region", "--from-backup", "--region", DST, "--yes")
    assert second.exit_code == 0, second.output
    assert "resuming the rebuild" in second.stderr
    assert engine.ops("up") == [("up", "dev-dns")]  # the stack and the restore are not redone
    assert dns(sim) == [(None, stable_endpoint(DST))] and topology(project)["primary"] == DST
    assert [(c.region, c.service) for c in gate.refused] == [(SRC, "iot")]  # the first run's probe only


def test_an_env_with_a_secondary_is_sent_to_failover(run, engine, project, backed_up) -> None:  # noqa: ANN001
    path = project / "stacks" / "dev.topology.yaml"
    path.write_text(path.read_text().replace("secondaries: []", f"secondaries: [{DST}]"))
    engine.calls.clear()
    result = run("rebuild-region", "--from-backup", "--region", "eu-central-1", "--yes")
    assert result.exit_code == 2 and f"orchestrate failover --to {DST}" in result.stderr, result.output
    assert engine.ops("up") == []


def test_failback_after_the_region_returns_reverses_the_rebuild(run, sim, project, iot, gate: Gate,  # noqa: ANN001
                                                                backed_up) -> None:
    gate.down.add(SRC)
    assert run("rebuild-region", "--from-backup", "--region", DST, "--yes").exit_code == 0
    iot(DST).create_thing(thingName="provisioned-during-outage")
    gate.down.discard(SRC)  # the old primary is back
    back = run("failback", "--yes", "--sync-rate", "500")
    assert back.exit_code == 0, back.output
    assert topology(project)["primary"] == SRC and dns(sim) == [(None, stable_endpoint(SRC))]
    assert "provisioned-during-outage" in {t["thingName"] for t in iot(SRC).list_things()["things"]}


def test_a_renamed_older_backup_does_not_win_and_a_stale_one_is_over_budget(  # noqa: PLR0913
        run, engine, sim, project, iot, ctx, gate: Gate, backed_up, tmp_path: Path) -> None:  # noqa: ANN001
    import time
    from datetime import datetime, timedelta, timezone

    from orchestrator.registry import backup_region

    s3 = client(ctx, "s3", DST)
    first = sorted(vault_keys(ctx))
    time.sleep(1.1)  # the next backup is signed a second later
    iot(SRC).create_thing(thingName="after-the-first-backup")
    assert run("registry", "backup", "--json").exit_code == 0
    # the first (older) backup copied, signature and all, to a folder named as if it were the newest
    for key in first:
        folder, rest = key.split("/")[:4], key.split("/")[4:]
        s3.copy_object(Bucket=VAULT, CopySource={"Bucket": VAULT, "Key": key},
                       Key="/".join([*folder[:3], "20991231T235959Z", *rest]))
    # and, elsewhere, a signed backup three days old
    spec = str(engine.stacks[f"dev-region-{SRC}"].outputs[SIGNING_KEY_OUTPUT].value)
    stale = tmp_path / "stale"
    backup_region(ctx, "dev", SRC, stale, now=datetime.now(timezone.utc) - timedelta(hours=72), signing_key=spec,
                  key_region=DST)
    things = len(read_snapshot(iot(SRC), pems=False).things)
    gate.down.add(SRC)
    engine.calls.clear()

    over = run("rebuild-region", "--from-backup", "--region", DST, "--src", str(stale), "--yes")
    assert over.exit_code == 4 and "over the --max-age budget of 48 h" in over.stderr, over.output
    assert engine.ops("up") == [] and iot(DST).list_things()["things"] == []

    result = run("rebuild-region", "--from-backup", "--region", DST, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "20991231T235959Z" in result.stderr and "not what its folder name says" in result.stderr
    chosen = json.loads(result.stdout)["steps"][0]["detail"]
    # the newest by signed time: the second backup, with the thing made after the first
    assert "20991231T235959Z" not in chosen and f"verified ({things} things)" in chosen


def test_at_a_terminal_it_shows_what_each_stack_would_change_then_asks(  # noqa: PLR0913
        project, engine, endpoint, sim, iot, gate: Gate, backed_up, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from orchestrator.cli import options

    monkeypatch.setattr(options, "_interactive", lambda: True)
    gate.down.add(SRC)
    engine.calls.clear()
    result = CliRunner().invoke(cli, ["rebuild-region", "--from-backup", "--region", DST, "--endpoint-url", endpoint],
                                obj=Deps(engine_factory=lambda app: engine), input="eu-west-1\n",
                                catch_exceptions=False)
    assert result.exit_code == 4 and "not confirmed: nothing was touched" in result.stderr, result.output
    shown = result.stderr
    assert shown.index(f"would change dev-region-{DST}: ") < shown.index(f"Type '{DST}' to confirm")
    assert shown.index("would change dev-dns: ") < shown.index(f"Type '{DST}' to confirm")
    assert {op for op, _ in engine.ops()} <= {"preview"} and iot(DST).list_things()["things"] == []
    assert dns(sim) == [(None, stable_endpoint(SRC))] and lifecycle_record(project) is None
