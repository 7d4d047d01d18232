"""Continuous replication into each region: the registry-events table's replica and stream, the
replication function (errors, throttles, iterator age), lag, dead letters, the last reconciliation,
and the registry event configuration that feeds it all.

Lag, dead letters and the last reconciliation are read exactly as `orchestrate status` reads them
(`operations.replication.replication_health`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrator.readiness.model import Verdict, not_applicable, not_ready, ready, rule, unknown
from orchestrator.readiness.probe import Probe, Unreadable, aws_read, not_found

UP_ALL = "orchestrate up --all  (the replication stack)"
WINDOW = timedelta(minutes=15)


def _function_region(probe: Probe, region: str) -> bool:
    from orchestrator.operations.replication import replication_regions

    return region in replication_regions(probe.topology)


def _table(probe: Probe, region: str) -> dict[str, Any] | None:
    def read() -> dict[str, Any] | None:
        name = f"iot-{probe.env}-registry-events"
        try:
            return dict(aws_read(f"DescribeTable {name}", lambda: probe.client("dynamodb", region)
                                 .describe_table(TableName=name))["Table"])
        except Unreadable as exc:
            if not_found(exc):
                return None
            raise
    return probe.once(("table", region), read)


@rule("replication.table_replica", "replication", "the registry-events table's replica is ACTIVE here")
def table_replica(probe: Probe, region: str) -> Verdict:
    if not probe.topology.multi_region:
        return not_applicable("single-region: no registry-events table")
    table = _table(probe, region)
    if table is None:
        return not_ready(f"no iot-{probe.env}-registry-events replica in {region}", UP_ALL)
    if table.get("TableStatus") != "ACTIVE":
        return not_ready(f"replica is {table.get('TableStatus')}", UP_ALL)
    return ready(f"{table['TableName']} ACTIVE")


@rule("replication.table_stream", "replication", "the registry-events table's stream is enabled here")
def table_stream(probe: Probe, region: str) -> Verdict:
    if not probe.topology.multi_region:
        return not_applicable("single-region: no registry-events table")
    table = _table(probe, region)
    if table is None:
        return unknown("no table (see replication.table_replica)")
    spec = table.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled"):
        return not_ready("the table's stream is off: the replication function sees no change", UP_ALL)
    if spec.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
        return not_ready(f"stream view {spec.get('StreamViewType')} (NEW_AND_OLD_IMAGES needed)", UP_ALL)
    return ready(f"stream {spec.get('StreamViewType')}")


def _lambda_metric(probe: Probe, region: str, metric: str, stat: str) -> float | None:
    from programs.contract import ReplicationNames

    name = ReplicationNames.of(probe.env, region).function
    got = aws_read(f"GetMetricStatistics AWS/Lambda {metric}", lambda: probe.client("cloudwatch", region)
                   .get_metric_statistics(Namespace="AWS/Lambda", MetricName=metric,
                                          Dimensions=[{"Name": "FunctionName", "Value": name}],
                                          StartTime=probe.now - WINDOW, EndTime=probe.now + timedelta(minutes=1),
                                          Period=60, Statistics=[stat]))
    points = got.get("Datapoints") or []
    if not points:
        return None
    return float(sum(p[stat] for p in points) if stat == "Sum" else max(p[stat] for p in points))


def _function(probe: Probe, region: str) -> Verdict | None:
    """NOT READY / UNKNOWN when the function is missing or not Active; None when it is fine."""
    from programs.contract import ReplicationNames

    name = ReplicationNames.of(probe.env, region).function

    def read() -> dict[str, Any] | None:
        try:
            return dict(aws_read(f"GetFunction {name}", lambda: probe.client("lambda", region)
                                 .get_function(FunctionName=name))["Configuration"])
        except Unreadable as exc:
            if not_found(exc):
                return None
            raise
    conf = probe.once(("function", region), read)
    if conf is None:
        return not_ready(f"no replication function {name}", UP_ALL)
    if conf.get("State") not in (None, "Active"):
        return not_ready(f"{name} is {conf.get('State')}", UP_ALL)
    return None


def _metric_rule(metric: str, stat: str, limit: float, unit: str) -> Any:
    def check(probe: Probe, region: str) -> Verdict:
        if not _function_region(probe, region):
            return not_applicable("no replication function in this region (by the routing mode)")
        bad = _function(probe, region)
        if bad is not None:
            return bad
        value = _lambda_metric(probe, region, metric, stat)
        bound = probe.settings.max_iterator_age_ms if metric == "IteratorAge" else limit
        if value is not None and value > bound:
            return not_ready(f"{metric} {value:g} {unit} in the last 15 min (> {bound:g})",
                             f"aws logs tail /aws/lambda/iot-{probe.env}-replicator-{region} --region {region}; "
                             f"then orchestrate registry replay --from-dlq --region {region}")
        return ready(f"{metric} {value or 0:g} {unit} in the last 15 min")
    return check


rule("replication.function_errors", "replication", "replication function: no errors (15 min)")(
    _metric_rule("Errors", "Sum", 0, "errors"))
rule("replication.function_throttles", "replication", "replication function: no throttles (15 min)")(
    _metric_rule("Throttles", "Sum", 0, "throttles"))
rule("replication.iterator_age", "replication", "replication function keeps up with its stream")(
    _metric_rule("IteratorAge", "Maximum", 0, "ms"))


def health(probe: Probe, region: str) -> Any:
    """Lag, dead letters and the last reconciliation, read as `orchestrate status` reads them
    (`operations.replication.replication_health`: the same metric, queue and applied table), through
    the probe's counted clients."""
    return probe.once(("health", region), lambda: _health(probe, region))


def _health(probe: Probe, region: str) -> Any:
    from orchestrator.operations.replication import LAG_WINDOW, ReplicationHealth
    from orchestrator.registry.events import LAG_METRIC, METRIC_NAMESPACE
    from orchestrator.registry.replicate import DynamoAppliedStore
    from programs.contract import ReplicationNames

    names = ReplicationNames.of(probe.env, region)
    try:
        stats = aws_read("GetMetricStatistics ReplicationLag", lambda: probe.client("cloudwatch", region)
                         .get_metric_statistics(
                             Namespace=METRIC_NAMESPACE, MetricName=LAG_METRIC, StartTime=probe.now - LAG_WINDOW,
                             EndTime=probe.now + timedelta(minutes=1), Period=60, Statistics=["Maximum"],
                             Dimensions=[{"Name": "Env", "Value": probe.env}, {"Name": "Region", "Value": region}]))
        points = sorted(stats.get("Datapoints", []), key=lambda p: p["Timestamp"])
        lag = int(points[-1]["Maximum"]) if points else None
        sqs = probe.client("sqs", region)
        url = aws_read(f"GetQueueUrl {names.dead_letter_queue}",
                       lambda: sqs.get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"])
        attrs = aws_read("GetQueueAttributes", lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"])
        dead = sum(int(v) for v in attrs.values())
        last = aws_read(f"GetItem {names.applied_table}", lambda: DynamoAppliedStore(
            probe.client("dynamodb", region), names.applied_table).reconciliation())
    except Unreadable as exc:
        return ReplicationHealth(region, error=str(exc))
    return ReplicationHealth(region, lag, dead, last)


def _health_rule(check: Any) -> Any:
    def wrapped(probe: Probe, region: str) -> Verdict:
        if not _function_region(probe, region):
            return not_applicable("no replication function in this region (by the routing mode)")
        got = health(probe, region)
        if got.error:
            return unknown(got.error)
        return check(probe, region, got)
    return wrapped


def _lag(probe: Probe, region: str, got: Any) -> Verdict:
    if got.lag_ms is None:
        return ready("no change applied in 15 min (no lag to measure)")
    if got.lag_ms > probe.settings.max_lag_ms:
        return not_ready(f"lag {got.lag_ms / 1000:.1f} s (> {probe.settings.max_lag_ms / 1000:g} s)",
                         f"orchestrate registry sync --from {probe.topology.primary} --to {region}")
    return ready(f"lag {got.lag_ms / 1000:.1f} s")


def _dead(probe: Probe, region: str, got: Any) -> Verdict:
    if got.dead_letters:
        return not_ready(f"{got.dead_letters} dead letters",
                         f"orchestrate registry replay --from-dlq --region {region}")
    return ready("dead-letter queue empty")


def _reconciled(probe: Probe, region: str, got: Any) -> Verdict:
    """The last reconciliation is recent and ok; or, past the age bound, a pass is under way that
    keeps making progress (module `reconcile_pass`: at 1M things one pass takes ~29 h, longer than
    the 26 h bound, so a healthy secondary is mid-pass most of the time).

    A pass in progress (the head item `reconcile-pass/<primary>` in the applied table, in any phase
    but done) excuses an ok last reconciliation that is too old only when all hold:
    - it made progress within `max_reconcile_stall_s` (its `updated_at`; two slices' worth, probe.py);
    - it is younger than the pass validity window (`reconcile_pass.VALIDITY_S`, 36 h: an older one is
      discarded by its next slice and its reads are no longer trusted);
    - the last ok reconciliation is at most `max_reconciliation_age_h` + 36 h old: the pass that
      wrote it was followed by a new one within a day, and that one is younger than 36 h; anything
      older means a pass in between was discarded or failed.
    A failed last reconciliation or none at all stays NOT READY (a pass in progress is named)."""
    fix = f"orchestrate registry sync --from {probe.topology.primary} --to {region}"
    rec = got.last_reconciliation
    if not rec:
        return not_ready("never reconciled" + _pass_note(probe, region), fix)
    try:
        at = datetime.fromisoformat(str(rec.get("at")))
    except ValueError:
        return unknown(f"unreadable reconciliation time {rec.get('at')!r}")
    age_h = (probe.now - at).total_seconds() / 3600
    if not rec.get("ok"):
        return not_ready(f"the last reconciliation ({age_h:.1f} h ago) FAILED with {rec.get('errors')} errors"
                         + _pass_note(probe, region), fix)
    if age_h <= probe.settings.max_reconciliation_age_h:
        return ready(f"reconciled {age_h:.1f} h ago, {rec.get('applied', 0)} applied")
    stale = f"last reconciliation {age_h:.1f} h ago (> {probe.settings.max_reconciliation_age_h:g} h)"
    try:
        progress = _pass(probe, region)
    except Unreadable as exc:
        return not_ready(f"{stale}; the pass in progress is unreadable ({exc})", fix)
    if progress is None:
        return not_ready(stale, fix)
    from orchestrator.registry.reconcile_pass import VALIDITY_S

    machine = _machine_fix(probe, region)
    started, updated = (datetime.fromisoformat(str(progress[k])) for k in ("started_at", "updated_at"))
    pass_h = (probe.now - started).total_seconds() / 3600
    idle_s = (probe.now - updated).total_seconds()
    what = f"{stale}; {_describe(progress)}, last progress {_ago(idle_s)} ago"
    if pass_h > VALIDITY_S / 3600:
        return not_ready(f"{what}: the pass started {pass_h:.1f} h ago, beyond its {VALIDITY_S / 3600:g} h "
                         "validity window (its next slice discards it)", machine)
    if idle_s > probe.settings.max_reconcile_stall_s:
        return not_ready(f"{what}: stuck (no progress for > {_ago(probe.settings.max_reconcile_stall_s)})", machine)
    bound_h = probe.settings.max_reconciliation_age_h + VALIDITY_S / 3600
    if age_h > bound_h:
        return not_ready(f"{what}, but the last ok reconciliation is older than {bound_h:g} h "
                         "(a pass in between was discarded or failed)", machine)
    return ready(f"pass in progress: {_describe(progress)}, last progress {_ago(idle_s)} ago "
                 f"(last reconciliation {age_h:.1f} h ago, {rec.get('applied', 0)} applied)")


def _pass(probe: Probe, region: str) -> dict[str, Any] | None:
    """The reconciliation pass from the primary into `region` in progress (any phase but done), as
    `orchestrate status` reads it (`reconcile_pass.read_progress`: one GetItem of the head item in
    the region's applied table); None when there is none, it is done, or `region` is the primary."""
    from orchestrator.registry.reconcile_pass import DONE, read_progress
    from programs.contract import ReplicationNames

    source = probe.topology.primary
    if source == region:
        return None
    table = ReplicationNames.of(probe.env, region).applied_table
    got = probe.once(("reconciling", region), lambda: aws_read(
        f"GetItem {table}", lambda: read_progress(probe.client("dynamodb", region), table, source,
                                                  now=probe.now.timestamp())))
    if not got or got.get("phase") == DONE:
        return None
    return got


def _pass_note(probe: Probe, region: str) -> str:
    try:
        progress = _pass(probe, region)
    except Unreadable:
        return ""
    return f"; {_describe(progress)}" if progress else ""


def _describe(p: dict[str, Any]) -> str:
    """`pass in progress: read X of ~Y, ETA …` (the numbers `orchestrate status` shows)."""
    from orchestrator.operations.replication import pass_stage

    total = p.get("total_estimate")
    of = f"read {int(p.get('read') or 0)} of ~{total}" if total else f"read {int(p.get('read') or 0)} (total unknown)"
    return f"pass since {p.get('started_at')}: {of}, {p.get('slices', 0)} slices, {pass_stage(p)}"


def _ago(seconds: float) -> str:
    return f"{max(0.0, seconds) / 60:.0f} min"


def _machine_fix(probe: Probe, region: str) -> str:
    from programs.contract import ReplicationNames

    machine = ReplicationNames.of(probe.env, region).reconcile_state_machine
    return (f"aws stepfunctions list-executions --region {region} --state-machine-arn "
            f"arn:aws:states:{region}:<account>:stateMachine:{machine}  (see why the pass stopped; "
            f"the next execution continues it), or orchestrate registry sync --from {probe.topology.primary} "
            f"--to {region} --full")


rule("replication.lag", "replication", "replication lag under the threshold")(_health_rule(_lag))
rule("replication.dead_letters", "replication", "the dead-letter queue is empty")(_health_rule(_dead))
rule("replication.reconciliation_age", "replication",
     "the last reconciliation is recent and ok, or a pass is making progress")(
    _health_rule(_reconciled))


@rule("replication.registry_events", "replication", "registry event configuration is on")
def registry_events(probe: Probe, region: str) -> Verdict:
    from programs.contract import REGISTRY_EVENTS

    try:
        got = aws_read("DescribeEventConfigurations", lambda: probe.client("iot", region)
                       .describe_event_configurations())
    except Unreadable as exc:
        return unknown(str(exc))
    conf = got.get("eventConfigurations") or {}
    off = [k for k in REGISTRY_EVENTS if not (conf.get(k) or {}).get("Enabled")]
    if off:
        return not_ready(f"registry events off: {', '.join(off)} (changes made here are not replicated)",
                         f"orchestrate up --region {region}")
    return ready(f"{len(REGISTRY_EVENTS)} registry event types on")
