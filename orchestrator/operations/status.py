"""`status`: what is deployed where, and how it is routed."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from orchestrator.operations.replication import ReplicationHealth, replication_health, replication_regions
from orchestrator.stacks.graph import all_stacks, dns_stack, dns_targets

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from orchestrator.context import Context
    from orchestrator.state import StateLayout
    from orchestrator.topology import Topology


@dataclass(frozen=True)
class StackStatus:
    name: str
    kind: str
    region: str
    role: str  # primary | secondary | none (dns/replication)
    routed: bool
    deployed: bool
    resource_count: int
    last_result: str | None
    last_update: str | None
    pending_operations: int


@dataclass(frozen=True)
class HeldLock:
    """A stack lock in the Pulumi backend (`.pulumi/locks/…`): an update is running, or died holding it."""

    stack: str
    holder: str
    since: str | None
    age_seconds: float | None

    def line(self) -> str:
        from orchestrator.state import lock_age

        return f"  {self.stack:<34} locked by {self.holder}{lock_age(self.since, self.age_seconds)}"


@dataclass(frozen=True)
class RunInProgress:
    """A run the run state backend says has not finished: a journal still `running`, a lifecycle
    transition not done, a registry sync checkpoint (a sync running, or interrupted)."""

    kind: str  # up | destroy | failover | promote | registry sync | …
    run: str  # the journal id, the transition's region, the region pair
    status: str
    host: str | None = None
    started: str | None = None
    detail: str = ""

    def line(self) -> str:
        where = f" on {self.host}" if self.host else ""
        when = f", started {self.started}" if self.started else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"  {self.kind} {self.run}: {self.status}{where}{when}{detail}"


@dataclass(frozen=True)
class Activity:
    """Locks held and runs in progress (`status`): what another machine may be doing right now."""

    locks: tuple[HeldLock, ...] = ()
    runs: tuple[RunInProgress, ...] = ()
    unreadable: str | None = None  # why the run state could not be read (status still reports)

    def to_json(self) -> dict[str, Any]:
        return {"locks": [lk.__dict__ for lk in self.locks], "runs": [r.__dict__ for r in self.runs],
                "unreadable": self.unreadable}

    def lines(self) -> list[str]:
        out = ["locks held: " + ("none" if not self.locks else
                                 f"{len(self.locks)} (clear a dead run's with `orchestrate recover STACK`)")]
        out.extend(lk.line() for lk in self.locks)
        out.append("runs in progress (or stopped midway): " + ("none" if not self.runs else str(len(self.runs))))
        out.extend(r.line() for r in self.runs)
        if self.unreadable:
            out.append(f"  run state not read: {self.unreadable}")
        return out


class BackupState(str, Enum):
    FOUND = "found"
    NONE_FOUND = "none found"  # the vault was read and holds no backup of this env
    UNREACHABLE = "unreachable"  # the vault could not be read (status exits 1)
    NO_VAULT = "no vault"  # no destination is configured or deployed yet


@dataclass(frozen=True)
class BackupStatus:
    state: BackupState
    age_hours: float | None = None
    reason: str | None = None

    def line(self) -> str:
        if self.state is BackupState.FOUND:
            return f"newest registry backup: {self.age_hours:.1f} h old"
        detail = f" ({self.reason})" if self.reason else ""
        return f"newest registry backup: {self.state.value}{detail}"


@dataclass(frozen=True)
class EnvironmentStatus:
    env: str
    domain: str
    routing: str
    stacks: tuple[StackStatus, ...]
    newest_backup_age_hours: float | None = None
    failover_control: str = "dns"
    routing_controls: Mapping[str, str] = field(default_factory=dict)  # region -> On | Off | ?
    warnings: tuple[str, ...] = ()
    backup: BackupStatus = BackupStatus(BackupState.NO_VAULT)
    backend: str = ""
    replication: tuple[ReplicationHealth, ...] = ()  # per region with a replication function
    activity: Activity = Activity()  # locks held and runs in progress
    verifications: tuple[SecondaryVerification, ...] = ()  # the last verification per secondary

    @property
    def ok(self) -> bool:
        """False when something status had to read could not be read (the backup vault)."""
        return self.backup.state is not BackupState.UNREACHABLE

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "domain": self.domain,
            "routing": self.routing,
            "failover_control": self.failover_control,
            "routing_controls": dict(self.routing_controls),
            "warnings": list(self.warnings),
            "backend": self.backend,
            "newest_backup_age_hours": self.newest_backup_age_hours,
            "backup": {"state": self.backup.state.value, "age_hours": self.backup.age_hours,
                       "reason": self.backup.reason},
            "stacks": [s.__dict__ for s in self.stacks],
            "replication": [r.to_json() for r in self.replication],
            "verifications": [v.to_json() for v in self.verifications],
            **self.activity.to_json(),
        }

    def lines(self) -> list[str]:
        out = [f"env {self.env}: {self.domain} routing={self.routing} failover_control={self.failover_control} "
               f"backend={self.backend}"]
        out.append(f"  {'stack':<34} {'kind':<12} {'region':<15} {'role':<10} {'deployed':<9} "
                   f"{'resources':>9}  last update")
        for s in self.stacks:
            role = s.role + ("*" if s.routed else "")
            last = f"{s.last_result or '-'} {s.last_update or ''}".strip()
            warn = f"  ({s.pending_operations} pending operations: run `orchestrate recover {s.name}`)" \
                if s.pending_operations else ""
            out.append(f"  {s.name:<34} {s.kind:<12} {s.region:<15} {role:<10} {'yes' if s.deployed else 'no':<9} "
                       f"{s.resource_count:>9}  {last}{warn}")
        out.append("  (* receives DNS traffic)")
        if self.routing_controls:
            states = ", ".join(f"{r}={st}" for r, st in sorted(self.routing_controls.items()))
            out.append(f"ARC routing controls: {states}")
        out.extend(f"warning: {w}" for w in self.warnings)
        out.append(self.backup.line())
        if self.replication:
            out.append("continuous replication (lag: apply time minus event time, newest 1-min maximum):")
            out.extend(r.line() for r in self.replication)
        if self.verifications:
            out.append("last registry verification per secondary (run `orchestrate registry verify` before "
                       "trusting one):")
            out.extend(v.line() for v in self.verifications)
        out.extend(self.activity.lines())
        out.append("can each region take the traffic now? run `orchestrate readiness`")
        return out


@dataclass(frozen=True)
class SecondaryVerification:
    """The last verification of primary -> secondary (`registry verify` or a sync's read-back)."""

    primary: str
    secondary: str
    last: Any = None  # LastVerification | None

    def to_json(self) -> dict[str, Any]:
        base = {"from": self.primary, "to": self.secondary}
        if self.last is None:
            return {**base, "verified": None}
        doc = self.last.to_json()
        return {**base, "verified": {k: doc[k] for k in ("source", "ok", "differences", "checked_at", "by_kind")}}

    def line(self) -> str:
        if self.last is None:
            return f"  {self.primary} -> {self.secondary}: never verified"
        return self.last.line()


def _verifications(app: Context) -> tuple[SecondaryVerification, ...]:
    """From the run state backend (no AWS call): one per secondary, from the primary."""
    from orchestrator.errors import OrchestrateError
    from orchestrator.operations.verification import last_verification

    topology = app.topology()
    out = []
    for region in topology.secondaries:
        try:
            last = last_verification(app.state, app.env, topology.primary, region)
        except (OrchestrateError, OSError) as exc:
            app.console.debug(f"last verification {topology.primary} -> {region}: {exc}")
            last = None
        out.append(SecondaryVerification(topology.primary, region, last))
    return tuple(out)


def environment_status(app: Context) -> EnvironmentStatus:
    topology = app.topology()
    engine = app.engine()
    refs = all_stacks(topology)
    controls = _control_states(app)
    routed = dns_routed_regions(topology, engine.outputs(dns_stack(topology).name), controls)
    with ThreadPoolExecutor(max_workers=min(4, len(refs)), thread_name_prefix="status") as pool:
        infos = list(pool.map(lambda ref: engine.info(ref.name), refs))
    rows = []
    for ref, info in zip(refs, infos, strict=True):
        region_role = topology.role(ref.region) if ref.kind.value == "region" else "none"
        rows.append(StackStatus(
            name=ref.name, kind=ref.kind.value, region=ref.region, role=region_role,
            routed=ref.kind.value == "region" and ref.region in routed, deployed=info.deployed,
            resource_count=info.resource_count, last_result=info.last_result, last_update=info.last_update,
            pending_operations=len(info.pending_operations),
        ))
    backup = _backup(app)
    replication_deployed = any(r.kind == "replication" and r.deployed for r in rows)
    return EnvironmentStatus(
        topology.env, topology.domain, topology.routing.value, tuple(rows),
        newest_backup_age_hours=backup.age_hours, failover_control=topology.failover_control.value,
        routing_controls=controls,
        warnings=tuple(resilience_warnings(topology, app.backend_url, app.secrets_provider,
                                           os.environ.get("ORCHESTRATE_BACKUP_DEST"),
                                           bucket_region=_bucket_locator(app),
                                           default_region=_default_region(app)
                                           if (app.secrets_provider or "").startswith("awskms://") else None)),
        backup=backup, backend=app.backend_name,
        replication=_replication(app) if replication_deployed else (),
        activity=activity(app), verifications=_verifications(app))


def dns_routed_regions(topology: Topology, dns_outputs: Any, controls: dict[str, str]) -> set[str]:
    """The regions DNS actually points at: the records the deployed DNS stack exports (what the last
    DNS apply left in Route 53), not what the topology file declares; in arc mode only those whose
    routing control is On. A DNS stack that is not deployed points nowhere. Only an engine whose
    DNS stack exports no record list (an old stack) falls back to the topology's DNS targets."""
    if not dns_outputs:
        return set()
    raw = dns_outputs.get("records")
    value = getattr(raw, "value", raw)
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if isinstance(value, list):
        routed = {str(r.get("region")) for r in value if isinstance(r, dict) and r.get("region")}
    else:
        routed = set(dns_targets(topology))
    if controls:
        routed = {r for r in routed if controls.get(r, "On") == "On"}
    return routed


RECENT_JOURNALS = 20  # the newest journals read for runs still `running` (older ones are history)


def activity(app: Context) -> Activity:
    """Locks held (the Pulumi backend's lock files, per stack) and unfinished runs (the run state
    backend: journals, the lifecycle transition, registry sync checkpoints)."""
    from orchestrator.errors import OrchestrateError

    engine = app.engine()
    refs = all_stacks(app.topology())
    with ThreadPoolExecutor(max_workers=min(4, len(refs)), thread_name_prefix="status-locks") as pool:
        found = list(pool.map(lambda ref: engine.lock(ref.name), refs))
    locks = tuple(HeldLock(lk.stack, lk.holder, lk.since, None if lk.age_seconds is None else
                           round(lk.age_seconds)) for lk in found if lk is not None)
    try:
        return Activity(locks, tuple(_runs(app)))
    except (OrchestrateError, OSError, ValueError) as exc:
        reason = exc.one_line() if isinstance(exc, OrchestrateError) else str(exc)
        return Activity(locks, (), reason)


def _peek(state: StateLayout, path: Path) -> Any:
    """A run state document read from the store, not copied into the cache: a checkpoint status saw
    must never be resumed from the cache after its run finished elsewhere."""
    import json

    found = state.store.get(state.key(path))
    return json.loads(found.data) if found else None


def _runs(app: Context) -> list[RunInProgress]:
    state, env = app.state, app.env
    out = []
    for path in state.documents(state.runs_dir, f"{env}-")[-RECENT_JOURNALS:]:
        data = _peek(state, path)
        if isinstance(data, dict) and data.get("status") == "running":
            out.append(RunInProgress(str(data.get("operation", "?")), path.stem, "running", data.get("host"),
                                     data.get("started")))
    record = _peek(state, state.lifecycle_path(env))
    if isinstance(record, dict) and record.get("operation") and record.get("status") != "done":
        step = f"at step {record['failed_step']}" if record.get("failed_step") else ""
        source = f"from {record['from']}" if record.get("from") else ""
        out.append(RunInProgress(str(record["operation"]), str(record.get("region", "?")),
                                 str(record.get("status", "?")), None, record.get("started"),
                                 ", ".join(x for x in (source, step) if x)))
    sync_dir = state.root / "sync"
    for path in state.documents(sync_dir, f"{env}-"):
        if path.name.endswith(".versions.json"):
            data = _peek(state, path)
            mark = data.get("in_progress") if isinstance(data, dict) else None
            if isinstance(mark, dict):
                started = mark.get("started_at")
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(started))) \
                    if isinstance(started, (int, float)) else None
                out.append(RunInProgress("registry sync", f"{data.get('src_region', '?')} -> "
                                         f"{data.get('dst_region', '?')}",
                                         "started writing, not finished or not verified (the next sync "
                                         "reads every thing again)", mark.get("host"), stamp))
            continue
        if path.name.endswith((".listings.json", ".verified.json")):
            continue
        data = _peek(state, path)
        if path.name.endswith(".lock.json"):  # a sync's lease (`state.Lease`): who runs it now
            if isinstance(data, dict) and data.get("holder"):
                out.append(_lease_run(data))
            continue
        if isinstance(data, dict) and data.get("src_region"):
            written = data.get("written_at")
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(written))) if written else None
            out.append(RunInProgress("registry sync", f"{data['src_region']} -> {data.get('dst_region', '?')}",
                                     "checkpoint left (running, or interrupted: re-run to resume)",
                                     detail=f"{len(data.get('done') or [])} operations done"
                                     + (f", last written {stamp}" if stamp else "")))
    return out


def _lease_run(data: dict[str, Any]) -> RunInProgress:
    what = str(data.get("what") or "registry sync ?")
    kind, _, pair = what.partition(" sync ")
    pair = pair.split(" (env ", 1)[0]
    now = time.time()
    try:
        renewed, ttl = float(data.get("renewed_at", 0)), float(data.get("ttl_s", 0))
        acquired = float(data.get("acquired_at", renewed))
    except (TypeError, ValueError):
        renewed = ttl = acquired = 0.0
    live = now - renewed < ttl
    status = (f"running (lease renewed {max(0.0, now - renewed):.0f} s ago)" if live else
              "lease expired: its holder stopped renewing (the next sync takes it over)")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(acquired)) if acquired else None
    return RunInProgress(f"{kind} sync" if pair else what, pair or "?", status, str(data["holder"]), started)


def _replication(app: Context) -> tuple[ReplicationHealth, ...]:
    """Lag, dead letters and the last reconciliation per region with a replication function."""
    regions = replication_regions(app.topology())
    if not regions:
        return ()
    ctx = app.aws()
    with ThreadPoolExecutor(max_workers=min(4, len(regions)), thread_name_prefix="status-replication") as pool:
        primary = app.topology().primary
        return tuple(pool.map(lambda r: replication_health(ctx, app.env, r, source=primary), regions))


def _control_states(app: Context) -> dict[str, str]:
    """Routing-control states read from the ARC cluster's data plane (arc mode, multi-region)."""
    from orchestrator.errors import OrchestrateError
    from orchestrator.routing_controls import ArcWiring, read_states
    from orchestrator.stacks.graph import dns_stack
    from orchestrator.topology import FailoverControl

    topology = app.topology()
    if topology.failover_control is not FailoverControl.ARC or not topology.multi_region:
        return {}
    try:
        wiring = ArcWiring.from_outputs(app.engine().outputs(dns_stack(topology).name) or {})
        return {r: st.value for r, st in read_states(app.aws(), wiring).states.items()}
    except OrchestrateError as exc:  # status reports, it does not fail on an unreachable cluster
        app.console.debug(f"routing controls: {exc.one_line()}")
        return {}


_REGION_IN_URL = re.compile(r"(?:[?&]region=|\.s3[.-]|:kms:|kms\.)([a-z]{2}(?:-[a-z]+)+-\d)")


def resilience_warnings(topology: Topology, backend_url: str | None, secrets_provider: str | None,
                        backup_dest: str | None, *, bucket_region: Callable[[str], str | None] | None = None,
                        default_region: str | None = None) -> list[str]:
    """What failover would depend on in the primary region: during its outage these do not answer.

    A region written in the URL wins. Otherwise an S3 URL's bucket is located with `bucket_region`
    (where the bucket lives decides, not where the client points), and an `awskms://` key named
    without a region (an alias or a bare key id) is looked up in the SDK's default region,
    which is `default_region`.
    """
    primary = topology.primary
    out: list[str] = []

    def region_of(url: str | None) -> str | None:
        m = _REGION_IN_URL.search(url or "")
        if m:
            return m.group(1)
        if url and url.startswith("s3://") and bucket_region is not None:
            bucket = url[len("s3://"):].split("/", 1)[0].split("?", 1)[0]  # s3://bucket/prefix?query
            return bucket_region(bucket) if bucket else None
        if url and url.startswith("awskms://"):
            return default_region
        return None

    if region_of(backend_url) == primary:
        out.append(f"the state backend ({backend_url}) is in the primary region {primary}: during its outage "
                   f"no stack can be read or updated; keep it in another region (see docs/runbooks/failover.md)")
    if region_of(secrets_provider) == primary:
        out.append(f"the KMS key for secrets ({secrets_provider}) is in the primary region {primary}: during its "
                   f"outage stack secrets cannot be decrypted; use a multi-Region key or one in another region")
    vault = region_of(backup_dest) if backup_dest else topology.backup_region
    if vault == primary:
        out.append(f"the backup vault is in the primary region {primary}: registry backups are unreachable "
                   f"during its outage; set backup_region to another residency region")
    return out


def _bucket_locator(app: Context) -> Callable[[str], str | None]:
    """Where an S3 bucket lives (GetBucketLocation), or None when that cannot be read: status
    warns on what it knows and never fails because a lookup did not answer."""
    from orchestrator.errors import OrchestrateError

    def locate(bucket: str) -> str | None:
        from orchestrator.aws import bucket_region

        try:
            return bucket_region(app.aws(), bucket, own_retries=True)
        except OrchestrateError as exc:
            app.console.debug(f"resilience check: {exc.one_line()}")
            return None

    return locate


def _default_region(app: Context) -> str | None:
    from orchestrator.aws import session
    from orchestrator.errors import OrchestrateError

    try:
        return session(app.aws()).region_name
    except OrchestrateError:
        return None


def _backup(app: Context) -> BackupStatus:
    """The newest backup where the backup job writes ($ORCHESTRATE_BACKUP_DEST, else the vault):
    a vault that cannot be read is "unreachable", never mistaken for an empty one."""
    from orchestrator.errors import InputRejected, OrchestrateError
    from orchestrator.operations.backups import backup_destination, home_outputs, signing_key_spec
    from orchestrator.registry import backup_age
    from orchestrator.scrub import scrub

    home = home_outputs(app)  # the vault and the signing key: one read of the home stack's outputs
    try:
        dest = backup_destination(app, home)
    except InputRejected as exc:  # nothing deployed or configured yet: there is no vault to read
        return BackupStatus(BackupState.NO_VAULT, reason=scrub(exc.message))
    except OrchestrateError as exc:
        return BackupStatus(BackupState.UNREACHABLE, reason=scrub(exc.message))
    try:
        # the newest backup whose signature verifies, as a restore would choose it
        age = backup_age(app.aws(), dest, env=app.env, signing_key=signing_key_spec(app, None, home),
                         key_region=app.topology().home_region)
    except OrchestrateError as exc:
        return BackupStatus(BackupState.UNREACHABLE, reason=scrub(exc.message))
    except OSError as exc:
        return BackupStatus(BackupState.UNREACHABLE, reason=f"{dest}: {exc.strerror or exc}")
    if age is None:
        return BackupStatus(BackupState.NONE_FOUND, reason=f"in {dest}")
    return BackupStatus(BackupState.FOUND, round(age.total_seconds() / 3600, 2))
