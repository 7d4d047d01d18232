"""Readiness while the daily reconciliation is mid-pass (issue 22): at 1M things one Step Functions
pass takes ~29 h, longer than the 26 h bound on the last reconciliation's age, so the rule
`replication.reconciliation_age` also reads the pass in progress (its head item in the secondary's
applied table, on the moto server): READY while it makes progress, NOT READY when it is stuck, older
than its validity window, or follows a last ok reconciliation too old to be its predecessor."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.readiness import Status
from orchestrator.readiness import rules as _rules  # noqa: F401 - registers the rules
from orchestrator.readiness.model import RULES, Verdict
from orchestrator.readiness.probe import Probe, Settings
from orchestrator.registry.reconcile_pass import APPLY, DONE, READ, VALIDITY_S, PassState, PassStore
from orchestrator.registry.replicate import DynamoAppliedStore
from programs.contract import ReplicationNames
from tests.ops.conftest import DST, SRC
from tests.ops.readiness_world import ENV, topology

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
NAMES = ReplicationNames.of(ENV, DST)
RULE = "replication.reconciliation_age"


@pytest.fixture
def world(ctx: AwsContext) -> AwsContext:
    """What the replication health reads in the secondary: the dead-letter queue and the applied table."""
    client(ctx, "sqs", DST).create_queue(QueueName=NAMES.dead_letter_queue)
    client(ctx, "dynamodb", DST).create_table(
        TableName=NAMES.applied_table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "objectKey", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "objectKey", "KeyType": "HASH"}])
    return ctx


def last(ctx: AwsContext, hours_ago: float, *, ok: bool = True) -> None:
    at = (NOW - timedelta(hours=hours_ago)).isoformat(timespec="seconds")
    DynamoAppliedStore(client(ctx, "dynamodb", DST), NAMES.applied_table).put_reconciliation(
        {"at": at, "from": SRC, "ok": ok, "applied": 3, "errors": 0 if ok else 2, "things": 1_000_000})


def in_progress(ctx: AwsContext, *, started_h: float, idle_s: float, read: int = 700_000,
                phase: str = READ) -> None:
    t = NOW.timestamp()
    PassStore(client(ctx, "dynamodb", DST), NAMES.applied_table, SRC).save(PassState(
        "p1", SRC, t - started_h * 3600, phase=phase, cursor="tok", read=read, pages=read // 250,
        total_estimate=1_000_000, slices=120, updated_at=t - idle_s))


def check(ctx: AwsContext) -> tuple[Verdict, Probe]:
    probe = Probe(env=ENV, topology=topology(), ctx=ctx, outputs=lambda _: None, settings=Settings(), now=NOW)
    return RULES[RULE].fn(probe, DST), probe


def test_a_pass_making_progress_keeps_a_secondary_with_an_old_reconciliation_ready(world: AwsContext) -> None:
    last(world, 40)
    in_progress(world, started_h=20, idle_s=300)
    verdict, probe = check(world)
    assert verdict.status is Status.READY, verdict
    # 700,000 read in 19 h 55 min: 9.76/s, the 300,000 left in about 8 h 32 min
    assert re.fullmatch(r"pass in progress: pass since 2026-12-02T16:00:00\+00:00: read 700000 of ~1000000, "
                        r"120 slices, ETA 8 h \d\d min, last progress 5 min ago "
                        r"\(last reconciliation 40\.0 h ago, 3 applied\)", verdict.evidence), verdict.evidence
    assert probe.calls["dynamodb.GetItem"] == 2  # the last reconciliation and the pass's head item


def test_the_apply_phase_counts_as_progress(world: AwsContext) -> None:
    last(world, 50)
    in_progress(world, started_h=28, idle_s=900, read=1_000_000, phase=APPLY)
    verdict, _ = check(world)
    assert verdict.status is Status.READY, verdict
    assert "read 1000000 of ~1000000, 120 slices, reads done, applying" in verdict.evidence


@pytest.mark.parametrize("started_h, idle_s, last_h, says", [
    # no write for more than two slices' worth (2 x 960 s): the execution failed or ended busy
    (20, 2 * 960 + 60, 40, r"stuck \(no progress for > 32 min\)"),
    # progressing but past the 36 h window: its next slice discards it and starts over
    (36.5, 60, 40, r"started 36\.5 h ago, beyond its 36 h validity window"),
    # progressing, but the last ok reconciliation cannot be its predecessor (26 h + 36 h)
    (10, 60, 63, r"older than 62 h \(a pass in between was discarded or failed\)"),
])
def test_a_stuck_or_too_old_pass_is_not_ready_and_says_why(world: AwsContext, started_h: float, idle_s: float,
                                                           last_h: float, says: str) -> None:
    last(world, last_h)
    in_progress(world, started_h=started_h, idle_s=idle_s)
    verdict, _ = check(world)
    assert verdict.status is Status.NOT_READY, verdict
    assert verdict.evidence.startswith(f"last reconciliation {last_h:.1f} h ago (> 26 h); pass since "), verdict
    assert re.search(says, verdict.evidence), verdict.evidence
    assert f"stateMachine:iot-{ENV}-reconcile-{DST}" in verdict.fix


def test_without_a_pass_in_progress_an_old_reconciliation_is_not_ready_as_before(world: AwsContext) -> None:
    last(world, 40)
    verdict, _ = check(world)
    assert (verdict.status, verdict.evidence) == (Status.NOT_READY, "last reconciliation 40.0 h ago (> 26 h)")
    in_progress(world, started_h=20, idle_s=60, phase=DONE)  # a finished pass is no excuse
    verdict, _ = check(world)
    assert (verdict.status, verdict.evidence) == (Status.NOT_READY, "last reconciliation 40.0 h ago (> 26 h)")


def test_a_recent_reconciliation_is_ready_without_reading_the_pass(world: AwsContext) -> None:
    last(world, 2)
    in_progress(world, started_h=50, idle_s=10_000)  # a stuck pass does not matter yet
    verdict, probe = check(world)
    assert (verdict.status, verdict.evidence) == (Status.READY, "reconciled 2.0 h ago, 3 applied")
    assert probe.calls["dynamodb.GetItem"] == 1


def test_a_failed_or_missing_reconciliation_stays_not_ready_and_names_the_pass(world: AwsContext) -> None:
    in_progress(world, started_h=2, idle_s=60, read=50_000)
    verdict, _ = check(world)
    assert verdict.status is Status.NOT_READY
    assert verdict.evidence.startswith("never reconciled; pass since 2026-12-03T10:00:00+00:00: read 50000 of "
                                       "~1000000"), verdict.evidence
    last(world, 1, ok=False)
    verdict, _ = check(world)
    assert verdict.status is Status.NOT_READY
    assert verdict.evidence.startswith("the last reconciliation (1.0 h ago) FAILED with 2 errors; pass since ")


def test_the_bounds_are_the_state_machines_slice_and_the_pass_window() -> None:
    from programs.replication import SLICE_TIMEOUT_S

    assert Settings().max_reconcile_stall_s == 2 * SLICE_TIMEOUT_S
    assert VALIDITY_S == 36 * 3600


def test_the_scheduled_functions_role_may_read_the_head_item_and_nothing_else_of_the_table() -> None:
    """The readiness function runs the same rule: its role's one DynamoDB grant on the applied table
    is GetItem (the pass's head item is an item of that table; ConsistentRead needs no other action)."""
    from programs import policies

    doc = policies.readiness(account_id="123456789012", env=ENV, regions=[SRC, DST], function_regions=[DST],
                             table_regions=[SRC, DST], lake_bucket_arns=[], primary_lake_arn="arn:aws:s3:::l",
                             stream_names={SRC: "a", DST: "b"}, log_group_arn="arn:aws:logs:x", metric_namespace="n",
                             metric_region=SRC)
    table = f"arn:aws:dynamodb:{DST}:123456789012:table/{NAMES.applied_table}"
    on_table = [s for s in doc["Statement"] if table in _list(s["Resource"])]
    assert [(_list(s["Action"]), _list(s["Resource"])) for s in on_table] == [(["dynamodb:GetItem"], [table])]


def _list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_the_certificates_phase_counts_as_progress_and_says_so(world: AwsContext) -> None:
    from orchestrator.registry.reconcile_pass import CERTS

    last(world, 50)
    in_progress(world, started_h=30, idle_s=120, read=1_000_000, phase=CERTS)
    verdict, _ = check(world)
    assert verdict.status is Status.READY, verdict
    assert "read 1000000 of ~1000000, 120 slices, things done, certificates: 0 listed" in verdict.evidence
