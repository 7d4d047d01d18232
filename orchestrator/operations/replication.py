"""Continuous replication seen from the CLI: its health in `status`, and `registry replay --from-dlq`.

Per region with a replication function (each secondary; every member in latency mode):

- lag: the newest maximum of the `ReplicationLag` metric (apply time minus event time) over the
  last 15 minutes; None when no change was applied in that window;
- dead letters: the messages in the function's dead-letter queue (visible and in flight);
- the last reconciliation: what the daily backstop sync wrote into the region's applied table;
- the reconciliation pass in progress (a secondary's Step Functions pass of bounded slices,
  `orchestrator.registry.reconcile_pass`): things read of the estimated total, slices, and the ETA
  of its reads at the rate so far, from the pass's head item in the same table.

`replay_from_dlq` re-applies what the stream mapping gave up on: it reads each dead letter's batch
back from the stream and runs it through the same function code (`orchestrator.registry.replicate`),
trusting a message only as a pointer into the environment's own table's stream (its name from the
replication stack's outputs) and re-reading things and shadows from their origin.
No click here: the CLI renders and confirms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InputRejected

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.aws import AwsContext
    from orchestrator.registry.replicate import ReplayReport
    from orchestrator.topology import Topology

LAG_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class ReplicationHealth:
    region: str
    lag_ms: int | None = None
    dead_letters: int | None = None
    last_reconciliation: dict[str, Any] | None = None
    error: str | None = None  # why the numbers could not be read (status reports, it does not fail)
    reconciling: dict[str, Any] | None = None  # the pass in progress (reconcile_pass.read_progress)

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "lag_ms": self.lag_ms, "dead_letters": self.dead_letters,
                "last_reconciliation": self.last_reconciliation, "reconciling": self.reconciling,
                "error": self.error}

    def line(self) -> str:
        if self.error:
            return f"  {self.region:<15} unavailable: {self.error}"
        lag = "no changes in 15 min" if self.lag_ms is None else f"{self.lag_ms / 1000:.1f} s"
        rec = self.last_reconciliation
        last = "never" if not rec else (f"{'ok' if rec.get('ok') else 'FAILED'} at {rec.get('at')} "
                                         f"({rec.get('applied', 0)} applied, {rec.get('errors', 0)} errors)")
        dlq = f"{self.dead_letters} dead letters" + (
            f" (run `orchestrate registry replay --from-dlq --region {self.region}`)" if self.dead_letters else "")
        return (f"  {self.region:<15} lag {lag:<22} {dlq:<16}  last reconciliation {last}"
                + failed_pages(rec or {}) + self._pass())

    def _pass(self) -> str:
        """`; reconciling: …` while a pass is under way (nothing once it is done or discarded)."""
        p = self.reconciling
        if not p or p.get("phase") == "done" or p.get("stale"):
            return ""
        total = p.get("total_estimate")
        read = int(p.get("read") or 0)
        of = f"{read}/{total} things read ({100 * read // total} %)" if total else f"{read} things read (total unknown)"
        if p.get("kind") == "recheck":  # no listing: the last pass's failed list, item by item
            of = f"{int(p.get('retry_next') or 0)}/{int(p.get('retry_items') or 0)} failed-list items re-checked"
        when = pass_stage(p, unknown="ETA unknown until the rate is known")
        kind = "re-checking the last pass's failed objects" if p.get("kind") == "recheck" else "reconciling"
        failing = "the end (plane, record)" if p.get("phase") == "apply" else "page"
        retrying = (f", {failing} failing ({p.get('page_error')}, attempt {p['page_attempts']})"
                    if p.get("page_attempts") else "")
        return (f"; {kind} since {p.get('started_at')}: {of}, {p.get('slices', 0)} slices, {when}{retrying}"
                + failed_pages(p))


def failed_pages(p: dict[str, Any]) -> str:
    """The pages a pass gave up on (`reconcile_pass`: their reads kept failing), the failed list's
    overflow, and what the next pass does about them; nothing when there are none."""
    out = ""
    n = int(p.get("pages_failed") or 0)
    if n:
        shown = []
        for page in (p.get("failed_pages") or [])[:3]:
            where = "" if page.get("phase") == "apply" else f" at {page['marker']}" if page.get("marker") else (
                f" (failed-list item {page['item']})" if page.get("item") is not None else " (first page)")
            shown.append(f"{page.get('phase')}{where}: {page.get('error')}, unread {page.get('unread', 'nothing')}")
        more = f"; {n - len(shown)} more" if n > len(shown) else ""
        out += f"; {n} page(s) failed after their retries [{'; '.join(shown)}{more}]"
    nxt = p.get("retry_next_pass") or {}
    dropped = int(p.get("failed_dropped") or nxt.get("dropped") or 0)
    if dropped:
        out += (f"; {dropped} failed objects past the failed list's bound (not kept by name: "
                "the next pass lists the whole fleet)")
    if nxt.get("next") == "recheck":
        out += f"; the next pass re-checks only the {nxt.get('objects')} failed objects"
    elif nxt.get("next") == "full" and (nxt.get("objects") or p.get("unlisted")):
        out += "; the next pass lists the whole fleet"
    return out


def pass_stage(p: dict[str, Any], unknown: str = "ETA unknown") -> str:
    """Where a reconciliation pass in progress stands (`reconcile_pass.read_progress`'s record):
    its phase once the reads are done, else its ETA. `orchestrate status` and the readiness rule
    both say it this way."""
    if p.get("phase") == "apply":
        return "reads done, applying"
    if p.get("phase") == "certificates":
        return f"things done, certificates: {int(p.get('certificates') or 0)} listed"
    eta = p.get("eta_s")
    return unknown if eta is None else f"ETA {_duration(float(eta))}"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def replication_regions(topology: Topology) -> tuple[str, ...]:
    from programs.contract import function_regions

    return function_regions(topology.routing.value, topology.primary, tuple(topology.secondaries))


def replication_health(ctx: AwsContext, env: str, region: str, *, now: datetime | None = None,
                       source: str | None = None) -> ReplicationHealth:
    """One region's lag, dead letters and last reconciliation (errors become `error`), and with
    `source` (the primary; not this region) the reconciliation pass from it in progress."""
    from orchestrator.aws import client
    from orchestrator.errors import OrchestrateError
    from orchestrator.registry.calls import error_code
    from orchestrator.registry.events import LAG_METRIC, METRIC_NAMESPACE
    from orchestrator.registry.replicate import DynamoAppliedStore
    from programs.contract import ReplicationNames

    names = ReplicationNames.of(env, region)
    now = now or datetime.now(timezone.utc)
    try:
        stats = client(ctx, "cloudwatch", region).get_metric_statistics(
            Namespace=METRIC_NAMESPACE, MetricName=LAG_METRIC, StartTime=now - LAG_WINDOW,
            EndTime=now + timedelta(minutes=1), Period=60,  # the current, still open minute too
            Statistics=["Maximum"], Dimensions=[{"Name": "Env", "Value": env}, {"Name": "Region", "Value": region}])
        points = sorted(stats.get("Datapoints", []), key=lambda p: p["Timestamp"])
        lag = int(points[-1]["Maximum"]) if points else None
        sqs = client(ctx, "sqs", region)
        url = sqs.get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        dead = sum(int(v) for v in attrs.values())
        ddb = client(ctx, "dynamodb", region)
        last = DynamoAppliedStore(ddb, names.applied_table).reconciliation()
        reconciling = None
        if source is not None and source != region:
            from orchestrator.registry.reconcile_pass import read_progress

            reconciling = read_progress(ddb, names.applied_table, source, now=now.timestamp())
    except OrchestrateError as exc:
        return ReplicationHealth(region, error=exc.one_line())
    except Exception as exc:  # botocore: not deployed yet, no permission, ...
        return ReplicationHealth(region, error=error_code(exc) or type(exc).__name__)
    return ReplicationHealth(region, lag, dead, last, reconciling=reconciling)


def count_dead_letters(ctx: AwsContext, env: str, region: str) -> int:
    health = replication_health(ctx, env, region)
    if health.error:
        raise InputRejected(f"no replication dead-letter queue readable in {region}: {health.error}")
    return health.dead_letters or 0


def check_replay_region(topology: Topology, region: str) -> None:
    regions = replication_regions(topology)
    if region not in regions:
        raise InputRejected(f"{region} has no replication function in env {topology.env} "
                            f"(regions with one: {', '.join(regions) or 'none'})")


def registry_table(outputs: Any, env: str) -> str:
    """The environment's registry-events table, from the replication stack's outputs."""
    value = (outputs or {}).get("registryTableName")
    name = getattr(value, "value", None)
    if not isinstance(name, str) or not name:
        raise InputRejected(f"the replication stack of env {env} has no registryTableName output "
                            f"(run `orchestrate up --all` first)")
    return name


def replay_from_dlq(ctx: AwsContext, topology: Topology, region: str, table_name: str, *,
                    max_messages: int = 1000) -> ReplayReport:
    """Re-apply the dead letters of `region`'s function; what still fails stays in the queue. Only
    batches of `table_name`'s own stream in `region` are replayed, and only from member origins;
    things and shadows are re-read from their origin (the source of truth), not taken from records."""
    from orchestrator.aws import aws_errors, client
    from orchestrator.registry.events import METRIC_NAMESPACE
    from orchestrator.registry.replicate import (
        DynamoAppliedStore,
        Region,
        Replicator,
        own_streams,
        put_lag_metrics,
        replay_dead_letters,
    )
    from programs.contract import ReplicationNames

    check_replay_region(topology, region)
    names = ReplicationNames.of(topology.env, region)

    def region_of(name: str) -> Region:
        return Region.of(name, client(ctx, "iot", name, own_retries=True),
                         client(ctx, "iot-data", name, own_retries=True) if ctx.endpoint_url else _data(ctx, name))

    def keep(_letter: Any) -> None:
        """A record refused during a replay: its message stays in the queue (counted as refused)."""

    with aws_errors(f"registry replay into {region}"):
        cloudwatch = client(ctx, "cloudwatch", region)
        dims = [{"Name": "Env", "Value": topology.env}, {"Name": "Region", "Value": region}]
        replicator = Replicator(region_of(region),
                                DynamoAppliedStore(client(ctx, "dynamodb", region), names.applied_table),
                                region_of, lambda lags: put_lag_metrics(cloudwatch, METRIC_NAMESPACE, dims, lags),
                                members=frozenset(topology.regions), dead_letter=keep)
        streams = client(ctx, "dynamodbstreams", region)
        allowed = own_streams(streams, table_name)
        sqs = client(ctx, "sqs", region)
        url = sqs.get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"]
        return replay_dead_letters(sqs, streams, url, replicator, allowed_streams=allowed,
                                   max_messages=max_messages)


def _data(ctx: AwsContext, region: str) -> Any:
    """The shadow data plane at the account's ATS endpoint of `region`."""
    from orchestrator.aws import session

    iot = session(ctx).client("iot", region_name=region)
    host = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    return session(ctx).client("iot-data", region_name=region, endpoint_url=f"https://{host}")
