"""`orchestrate registry reconcile --start`: a full reconciliation of each secondary, in AWS when the
fleet is too large for one CI job (issue 22).

Per secondary (one without a replication function keeps the CLI path):

- the fleet's size is the last reconciliation's `things` (the applied table), else the estimate of
  the pass in progress (`reconcile_pass.read_progress`); unknown counts as small;
- below `cli_below` things (default 200,000: a `--full` pass reads one ListThingPrincipals per thing
  and region at 10/s, 2.8 h per 100k things, so ~200k fits a hosted runner's 6 h job;
  docs/performance.md), or without the state machine `iot-<env>-reconcile-<region>`, the secondary
  keeps the CLI path (`orchestrate registry sync --full`), which the caller runs;
- otherwise an execution of the state machine: one RUNNING already (the daily schedule's, or ours)
  is reported and no second is started; else one named `full-<UTC date>` is started. A STANDARD
  execution's name is unique per state machine for 90 days and StartExecution with the name and
  input of a running execution returns it instead of starting another (AWS Step Functions API
  reference, StartExecution: "idempotent for STANDARD workflows"); a closed one of that name answers
  ExecutionAlreadyExists, and that one (today's) is reported, not started again.

Accounts: the secondary's table and machine live in its own account, which is not always the CLI's.
The topology's `accounts:` names the role to assume per member region (`Topology.role_for`, as every
other operation that acts in a region does: lifecycle, replace_guard), so each secondary's calls go
through `ctx.assuming(role)`, and the machine's ARN is built from the account and partition that
role acts in (STS GetCallerIdentity through it, asked once per role), never from the CLI's own.

No click here: the CLI renders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.aws import AwsContext
    from orchestrator.topology import Topology

CLI_BELOW = 200_000
RECONCILE_INPUT = {"slices": 0}  # the schedule's input (programs/replication.py; no Pulumi import here)
STATE_MACHINE, CLI = "state-machine", "cli"


@dataclass(frozen=True)
class Reconciliation:
    region: str
    path: str  # STATE_MACHINE | CLI
    reason: str
    things: int | None = None
    execution_arn: str | None = None
    started: bool = False  # False: an execution already running (or today's) is reported
    status: str | None = None  # the execution's status (RUNNING, SUCCEEDED, ...)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        if self.path == CLI:
            return f"  {self.region:<15} CLI path: {self.reason}"
        verb = "started" if self.started else f"already {self.status or 'started'}"
        return f"  {self.region:<15} state machine execution {verb}: {self.execution_arn} ({self.reason})"


def start_reconciliations(ctx: AwsContext, topology: Topology, *, cli_below: int = CLI_BELOW,
                          today: datetime | None = None) -> list[Reconciliation]:
    from orchestrator.aws import aws_errors, client
    from orchestrator.operations.replication import replication_regions

    functions = replication_regions(topology)
    name = f"full-{(today or datetime.now(timezone.utc)).strftime('%Y-%m-%d')}"
    accounts: dict[str | None, list[str]] = {}  # per role (None: the CLI's own): [account id, partition]
    out = []
    for region in topology.secondaries:
        if region not in functions:
            out.append(Reconciliation(region, CLI, "no replication function here (by the routing mode)"))
            continue
        role = topology.role_for(region)
        here = ctx.assuming(role)  # the secondary's account (its role when the topology names one)
        things = _fleet(here, topology, region)
        if things is None or things < cli_below:
            size = "fleet size unknown (no reconciliation recorded)" if things is None else f"{things} things"
            out.append(Reconciliation(region, CLI, f"{size} < {cli_below}" if things is not None else size, things))
            continue
        with aws_errors(f"Step Functions in {region}"):
            if role not in accounts:
                me = client(here, "sts", region).get_caller_identity()
                accounts[role] = [str(me["Account"]), str(me["Arn"]).split(":")[1]]  # the id, the partition
            out.append(_execution(client(here, "stepfunctions", region), topology, region, accounts[role], name,
                                  things, cli_below))
    return out


def _fleet(ctx: AwsContext, topology: Topology, region: str) -> int | None:
    """The source's things as the last reconciliation (or the pass in progress) counted them."""
    from orchestrator.aws import client
    from orchestrator.registry.reconcile_pass import read_progress
    from orchestrator.registry.replicate import DynamoAppliedStore
    from programs.contract import ReplicationNames

    table = ReplicationNames.of(topology.env, region).applied_table
    ddb = client(ctx, "dynamodb", region)
    try:
        things = (DynamoAppliedStore(ddb, table).reconciliation() or {}).get("things")
        if not isinstance(things, int):
            things = (read_progress(ddb, table, topology.primary) or {}).get("total_estimate")
    except Exception as exc:  # no applied table (the replication stack not up): the CLI path
        from orchestrator.registry.calls import error_code

        if error_code(exc) not in ("ResourceNotFoundException", "AccessDeniedException"):
            raise
        return None
    return things if isinstance(things, int) and not isinstance(things, bool) else None


def _execution(sfn: Any, topology: Topology, region: str, account: list[str], name: str, things: int,
               cli_below: int) -> Reconciliation:
    from orchestrator.registry.calls import error_code
    from programs.contract import ReplicationNames

    machine = ReplicationNames.of(topology.env, region).reconcile_state_machine
    arn = f"arn:{account[1]}:states:{region}:{account[0]}:stateMachine:{machine}"
    why = f"{things} things >= {cli_below}"
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
    except Exception as exc:
        if error_code(exc) != "StateMachineDoesNotExist":
            raise
        return Reconciliation(region, CLI, f"{why}, but no state machine {machine} (orchestrate up --all)", things)
    running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=1).get("executions")
    if running:
        return Reconciliation(region, STATE_MACHINE, why, things, running[0]["executionArn"], False, "RUNNING")
    try:
        got = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(RECONCILE_INPUT, sort_keys=True))
    except Exception as exc:
        if error_code(exc) != "ExecutionAlreadyExists":
            raise
        existing = arn.replace(":stateMachine:", ":execution:") + f":{name}"
        status = sfn.describe_execution(executionArn=existing).get("status")
        return Reconciliation(region, STATE_MACHINE, f"{why}; today's execution ran already", things, existing,
                              False, status)
    return Reconciliation(region, STATE_MACHINE, why, things, got["executionArn"], True, "RUNNING")


__all__ = ["CLI", "CLI_BELOW", "STATE_MACHINE", "Reconciliation", "start_reconciliations"]
