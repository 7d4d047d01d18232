"""`orchestrate registry reconcile --start` (issue 22), through the CLI against moto: a large
secondary's full reconciliation starts its Step Functions state machine (one execution at a time,
one name per day), a small one or one without the machine keeps the CLI path."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
import yaml
from click.testing import Result

from orchestrator.aws import AwsContext, client
from orchestrator.operations.reconcile_start import RECONCILE_INPUT
from orchestrator.registry.replicate import DynamoAppliedStore
from programs.contract import ReplicationNames
from tests.ops.conftest import DST, SRC, THIRD
from tests.ops.replication_world import applied_table
from tests.ops.test_ops_lifecycle import project, run  # noqa: F401 - fixtures (sim, engine: tests/ops/conftest.py)

ROLE = "arn:aws:iam::123456789012:role/reconcile-machine"
DEFINITION = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
TODAY = datetime.now(timezone.utc).strftime("%Y-%m-%d")


@pytest.fixture
def env(project: Any, ctx: AwsContext) -> AwsContext:  # noqa: F811
    """Two secondaries with replication functions: DST (large, with its machine), THIRD (the table only)."""
    path = project / "stacks" / "dev.topology.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(secondaries=[DST, THIRD], routing="failover", residency=[SRC, DST, THIRD])
    path.write_text(yaml.safe_dump(doc))
    for region, things in ((DST, 1_000_000), (THIRD, 5_000)):
        table = applied_table(ctx, region, ReplicationNames.of("dev", region).applied_table)
        DynamoAppliedStore(client(ctx, "dynamodb", region), table).put_reconciliation(
            {"at": "2026-12-01T03:00:00+00:00", "from": SRC, "ok": True, "applied": 0, "errors": 0, "things": things})
    client(ctx, "stepfunctions", DST).create_state_machine(
        name=ReplicationNames.of("dev", DST).reconcile_state_machine, definition=json.dumps(DEFINITION),
        roleArn=ROLE, type="STANDARD")
    return ctx


def start(run: Callable[..., Result], *extra: str) -> dict[str, Any]:  # noqa: F811
    got = run("registry", "reconcile", "--start", "--json", *extra)
    assert got.exit_code == 0, got.output
    return dict(json.loads(got.stdout))


def executions(ctx: AwsContext) -> list[dict[str, Any]]:
    sfn = client(ctx, "stepfunctions", DST)
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return list(sfn.list_executions(stateMachineArn=arn)["executions"])


def test_a_large_secondary_starts_its_machine_once_and_a_small_one_keeps_the_cli(
        run: Callable[..., Result], env: AwsContext) -> None:  # noqa: F811
    doc = start(run)
    assert doc["from"] == SRC and doc["cli_below"] == 200_000
    big, small = doc["reconciliations"]
    machine = f"arn:aws:states:{DST}:123456789012:stateMachine:iot-dev-reconcile-{DST}"
    assert big == {"region": DST, "path": "state-machine", "reason": "1000000 things >= 200000", "things": 1_000_000,
                   "execution_arn": machine.replace(":stateMachine:", ":execution:") + f":full-{TODAY}",
                   "started": True, "status": "RUNNING"}
    assert small == {"region": THIRD, "path": "cli", "reason": "5000 things < 200000", "things": 5000,
                     "execution_arn": None, "started": False, "status": None}
    (one,) = executions(env)
    assert json.loads(client(env, "stepfunctions", DST).describe_execution(
        executionArn=one["executionArn"])["input"]) == RECONCILE_INPUT
    # again while it runs: reported, not a second execution
    again = start(run)["reconciliations"][0]
    assert (again["started"], again["status"], again["execution_arn"]) == (False, "RUNNING", big["execution_arn"])
    assert len(executions(env)) == 1
    # today's closed: its name is taken (ExecutionAlreadyExists), it is reported, nothing starts
    client(env, "stepfunctions", DST).stop_execution(executionArn=big["execution_arn"])
    closed = start(run)["reconciliations"][0]
    assert (closed["started"], closed["status"]) == (False, "ABORTED")
    assert closed["reason"] == "1000000 things >= 200000; today's execution ran already"
    assert len(executions(env)) == 1


def test_a_threshold_of_zero_starts_every_machine_and_without_one_the_cli_path_is_named(
        run: Callable[..., Result], env: AwsContext) -> None:  # noqa: F811
    doc = start(run, "--cli-below", "0")
    big, small = doc["reconciliations"]
    assert big["started"] is True
    assert small["path"] == "cli"
    assert small["reason"] == f"5000 things >= 0, but no state machine iot-dev-reconcile-{THIRD} (orchestrate up --all)"
    text = run("registry", "reconcile", "--start").stdout
    assert f"{DST}" in text and "state machine execution already RUNNING: arn:aws:states:" in text
    assert f"{THIRD}" in text and "CLI path: 5000 things < 200000" in text


def test_bad_input_is_one_line_exit_2_and_nothing_starts(run: Callable[..., Result], env: AwsContext) -> None:  # noqa: F811
    for args in (("registry", "reconcile"), ("registry", "reconcile", "--start", "--cli-below", "-1")):
        got = run(*args)
        assert got.exit_code == 2, got.output
    assert executions(env) == []


def test_the_input_is_the_schedules() -> None:
    from programs.replication import RECONCILE_INPUT as SCHEDULED

    assert RECONCILE_INPUT == SCHEDULED


OTHER = "222222222222"
OTHER_ROLE = f"arn:aws:iam::{OTHER}:role/orchestrate-members"


def test_a_secondary_in_another_account_is_started_there_through_its_role(
        run: Callable[..., Result], project: Any, ctx: AwsContext) -> None:  # noqa: F811
    """The member regions live in account B (the topology's `accounts:` role); the CLI's credentials
    act in account A, which has neither the table nor the machine. The machine is found, and
    started, in B; account A is left without any execution (moto keeps the accounts apart)."""
    from orchestrator import aws

    aws._ASSUMED.clear()
    path = project / "stacks" / "dev.topology.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(secondaries=[DST], routing="failover", residency=[SRC, DST],
               accounts={SRC: OTHER_ROLE, DST: OTHER_ROLE})
    path.write_text(yaml.safe_dump(doc))
    b = ctx.assuming(OTHER_ROLE)
    assert aws.account_id(b) == OTHER and aws.account_id(ctx) == "123456789012"
    table = applied_table(b, DST, ReplicationNames.of("dev", DST).applied_table)
    DynamoAppliedStore(client(b, "dynamodb", DST), table).put_reconciliation(
        {"at": "2026-12-01T03:00:00+00:00", "from": SRC, "ok": True, "applied": 0, "errors": 0, "things": 1_000_000})
    machine = ReplicationNames.of("dev", DST).reconcile_state_machine
    client(b, "stepfunctions", DST).create_state_machine(
        name=machine, definition=json.dumps(DEFINITION), roleArn=f"arn:aws:iam::{OTHER}:role/reconcile-machine",
        type="STANDARD")
    try:
        (got,) = start(run)["reconciliations"]
        assert got["path"] == "state-machine" and got["started"] is True, got
        assert got["execution_arn"] == f"arn:aws:states:{DST}:{OTHER}:execution:{machine}:full-{TODAY}"
        sfn_b = client(b, "stepfunctions", DST)
        (arn,) = [m["stateMachineArn"] for m in sfn_b.list_state_machines()["stateMachines"]]
        assert [e["executionArn"] for e in sfn_b.list_executions(stateMachineArn=arn)["executions"]] == \
            [got["execution_arn"]]
        assert client(ctx, "stepfunctions", DST).list_state_machines()["stateMachines"] == []  # A has none
    finally:
        aws._ASSUMED.clear()
