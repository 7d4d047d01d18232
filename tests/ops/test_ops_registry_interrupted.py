"""An interrupted sync is repaired by a plain re-run, and `ok` means read back equal (issue 19).

The issue's scenario, against the strict moto world: a clean sync; the destination's registry
rebuilt (things and certificates deleted there); the next sync killed with SIGKILL after creating
the things and before attaching their certificates. Before the fix, the following runs trusted
the version record of the clean sync ("ok", then "0 planned") and the secondary kept none of the
thing-certificate attachments.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from orchestrator.aws import AwsContext
from orchestrator.errors import OrchestrateError
from orchestrator.registry import RetryPolicy, SyncOptions, SyncReport, sync_clients, verify_registry
from orchestrator.registry.sync.run import VersionRecord
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import FaultInjector, _Raw, seed

IotFactory = Callable[[str], Any]
N = 20
FAST = {"rate": 10_000.0, "concurrency": 4}


def sync(src: Any, dst: Any, state: Path, **options: Any) -> SyncReport:
    return sync_clients(src, dst, SyncOptions(**{**FAST, **options}, state_path=state))


def parity(ctx: Any, iot: IotFactory) -> bool:
    """`registry verify` equal, once the device-management plane (which `registry sync` carries after
    the fleet path, and verify compares) is carried too: these tests interrupt the fleet path only."""
    from orchestrator.registry.calls import Caller
    from orchestrator.registry.plane import sync_plane

    assert sync_plane(Caller(iot(SRC)), Caller(iot(DST))).ok
    return bool(verify_registry(ctx, SRC, DST, shadows=False).equal)


def rebuild_destination(dst: Any) -> None:
    """The destination's registry rebuilt out of band: its things and certificates deleted."""
    for thing in [t["thingName"] for t in dst.list_things()["things"]]:
        for arn in dst.list_thing_principals(thingName=thing)["principals"]:
            dst.detach_thing_principal(thingName=thing, principal=arn)
        dst.delete_thing(thingName=thing)
    for cert in dst.list_certificates(pageSize=250)["certificates"]:
        for policy in dst.list_attached_policies(target=cert["certificateArn"])["policies"]:
            dst.detach_policy(policyName=policy["policyName"], target=cert["certificateArn"])
        if cert["status"] == "ACTIVE":
            dst.update_certificate(certificateId=cert["certificateId"], newStatus="INACTIVE")
        dst.delete_certificate(certificateId=cert["certificateId"])


def attachments(iot: Any) -> int:
    return sum(len(iot.list_thing_principals(thingName=t["thingName"])["principals"])
               for t in iot.list_things(maxResults=250)["things"])


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from orchestrator.aws import AwsContext, client
    from orchestrator.registry import SyncOptions, sync_clients

    endpoint, src, dst, state = sys.argv[1:5]
    ctx = AwsContext(endpoint_url=endpoint)
    d = client(ctx, "iot", dst, own_retries=True)
    # SIGKILL at the first AttachThingPrincipal: the things exist, no certificate is attached,
    # and no `finally` runs (exactly what the operator saw)
    d.meta.events.register("before-send.iot.AttachThingPrincipal",
                           lambda **_: os.kill(os.getpid(), signal.SIGKILL))
    sync_clients(client(ctx, "iot", src, own_retries=True), d,
                 SyncOptions(rate=10000.0, concurrency=1, state_path=Path(state)))
""")


def test_a_sync_killed_before_its_attachments_is_repaired_by_a_plain_rerun(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, N, group_policy=False)
    state = tmp_path / "versions.json"
    assert sync(src, dst, state).ok and attachments(dst) == N
    rebuild_destination(dst)
    assert attachments(dst) == 0

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, ctx.endpoint_url or "", SRC, DST, str(state)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(dst.list_things(maxResults=250)["things"]) == N + 1 and attachments(dst) == 0
    assert VersionRecord.unfinished(state)  # the mark was written before the first write

    repaired = sync(src, dst, state)
    assert repaired.ok, repaired.to_json()
    assert repaired.distrusted and "did not finish cleanly" in repaired.distrusted
    assert repaired.things_checked == N + 1  # it read every thing: it could vouch for none
    assert repaired.counts["thing_principal"]["create"] == N
    assert repaired.verification is not None and repaired.verification.ok
    assert repaired.verification.reread and repaired.verification.things_reread == N
    assert attachments(dst) == N
    assert parity(ctx, iot)

    quiet = sync(src, dst, state)  # now the record is one of a verified run again
    assert quiet.ok and quiet.planned == 0 and quiet.things_checked == 0 and quiet.distrusted is None

    # cost: the repair stayed within the reads of a first sync into an empty destination plus its read-back
    per_thing = repaired.calls_by_api["list_thing_principals"] / (N + 1)
    assert per_thing <= 3, repaired.calls_by_api


class Swallow:
    """Answers one API with 200 without sending it: a write that reports success and did not happen."""

    def __init__(self, client: Any, op: str) -> None:
        self.enabled = True
        self.swallowed = 0
        client.meta.events.register(f"before-send.iot.{op}", self._send)

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        if not self.enabled:
            return None
        self.swallowed += 1
        return AWSResponse(request.url, 200, {"Content-Type": "application/json"}, _Raw(b"{}"))


def test_a_write_that_does_not_stick_is_not_ok_and_the_next_run_repairs_it(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path) -> None:
    src = iot(SRC)
    seed(src, 6, group_policy=False)
    state = tmp_path / "versions.json"
    dst = iot(DST)
    lost = Swallow(dst, "AttachThingPrincipal")
    report = sync(src, dst, state)
    assert lost.swallowed == 6 and not report.errors and not report.blocked
    assert not report.ok  # every operation "succeeded"; the read-back says otherwise
    v = report.verification
    assert v is not None and not v.ok and v.counts == {"thing_principal": 6}
    assert v.first and all(item.startswith("attach thing principal") for item in v.first)
    assert report.to_json()["ok"] is False and report.to_json()["verification"]["remaining"] == 6
    assert VersionRecord.unfinished(state)

    lost.enabled = False
    repaired = sync(src, iot(DST), state)
    assert repaired.ok and repaired.counts["thing_principal"]["create"] == 6 and repaired.distrusted
    assert parity(ctx, iot)


def test_an_endpoint_that_dies_for_good_leaves_the_pair_not_ok_until_a_run_verifies(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path) -> None:
    src, dst = iot(SRC), iot(DST)
    seed(src, 8, group_policy=False)
    state = tmp_path / "versions.json"
    assert sync(src, dst, state).ok
    rebuild_destination(dst)

    def dead_destination() -> Any:
        d = iot(DST)
        FaultInjector(d, rate=1.0, seed=3, only={"AttachThingPrincipal"}, faults=("unavailable",))
        return d

    fast_retry = {"retry": RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)}
    for _ in range(2):  # the endpoint stays dead: every re-run fails, none says ok
        with pytest.raises(OrchestrateError):
            sync(src, dead_destination(), state, **fast_retry)
        assert VersionRecord.unfinished(state)
    assert attachments(dst) == 0

    healed = sync(src, iot(DST), state)
    assert healed.ok and healed.verification is not None and healed.verification.ok
    assert healed.counts["thing_principal"]["create"] == 8
    assert parity(ctx, iot)


def test_the_cli_records_the_sync_read_back_and_a_failed_verify_makes_the_next_sync_read_everything(
        ctx: AwsContext, iot: IotFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from orchestrator.cli.main import cli

    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "dev.topology.yaml").write_text(
        f"domain: iot.example.com\nhosted_zone: example.com\nprimary: {SRC}\nsecondaries: [{DST}]\n"
        f"routing: failover\nresidency: [{SRC}, {DST}]\n")
    monkeypatch.chdir(tmp_path)
    url = ctx.endpoint_url or ""
    src, dst = iot(SRC), iot(DST)
    seed(src, 5, group_policy=False)
    args = ["--from", SRC, "--to", DST, "--json", "--no-shadows", "--endpoint-url", url]
    first = CliRunner().invoke(cli, ["registry", "sync", *args])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["ok"] and doc["verification"]["ok"] and doc["verification"]["reread"]
    verified = tmp_path / ".orchestrate" / "sync" / f"dev-{SRC}-{DST}.verified.json"
    assert json.loads(verified.read_text())["source"] == "registry sync"

    # an attachment removed in the secondary out of band: no version moves, the sync cannot see it ...
    name = "dev-0003"
    arn = dst.list_thing_principals(thingName=name)["principals"][0]
    dst.detach_thing_principal(thingName=name, principal=arn)
    blind = json.loads(CliRunner().invoke(cli, ["registry", "sync", *args]).stdout)
    assert blind["things_checked"] == 0 and blind["planned"] == 0
    # ... `registry verify` does, and the next sync trusts no version
    found = CliRunner().invoke(cli, ["registry", "verify", *args])
    assert found.exit_code == 1 and json.loads(found.stdout)["kinds"]["thing_principals"]["only_in_from"] == 1
    assert json.loads(verified.read_text())["ok"] is False
    dry = CliRunner().invoke(cli, ["registry", "sync", "--dry-run", *args])  # reads what the real run reads
    assert dry.exit_code == 0 and json.loads(dry.stdout)["counts"]["thing_principal"]["create"] == 1, dry.output
    fixed = CliRunner().invoke(cli, ["registry", "sync", *args])
    assert fixed.exit_code == 0, fixed.output
    doc = json.loads(fixed.stdout)
    assert doc["distrusted"] and doc["things_checked"] == 6 and doc["counts"]["thing_principal"]["create"] == 1
    assert json.loads(verified.read_text())["ok"] is True
    again = CliRunner().invoke(cli, ["registry", "verify", *args])
    assert again.exit_code == 0, again.output
