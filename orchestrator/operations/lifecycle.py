"""Multi-region lifecycle: promote-secondary, failover, failback, removing a secondary.

Promotion is a persisted, resumable state machine (`.orchestrate/lifecycle/<env>.json`); each step
is verified against AWS before the next runs. Any failure before the DNS step leaves DNS
untouched; a failure in the DNS step puts the previous records back. Re-running after a failure
resumes at the failed step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.context import Context
from orchestrator.errors import GuardRefused, InputRejected, OperationFailed, OrchestrateError
from orchestrator.operations import guards, verify
from orchestrator.operations.dns import require_ok, transition_dns
from orchestrator.operations.recovery import Confirm
from orchestrator.operations.registry_port import RegistryPort
from orchestrator.routing_controls import ArcWiring, ControlResult, ControlState, only, read_states, set_states
from orchestrator.stacks import wiring
from orchestrator.stacks.graph import StackRef, dns_stack, dns_targets, region_stack, replication_stack
from orchestrator.stacks.runner import Runner, RunReport
from orchestrator.topology import FailoverControl, RoutingMode, Topology, save

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.aws import AwsContext


@dataclass(frozen=True)
class Step:
    name: str
    does: str
    stacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepOutcome:
    step: str
    status: str  # done | skipped (done earlier) | failed
    detail: str = ""


@dataclass(frozen=True)
class LifecycleReport:
    operation: str
    env: str
    region: str
    steps: tuple[StepOutcome, ...]
    notices: tuple[str, ...] = ()
    follow_ups: tuple[str, ...] = ()  # what to run next (commit the topology, `up --all`)

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "env": self.env, "region": self.region, "ok": self.ok,
                "steps": [s.__dict__ for s in self.steps], "notices": list(self.notices),
                "follow_ups": list(self.follow_ups)}


@dataclass
class Lifecycle:
    app: Context
    registry: RegistryPort | None = None
    sync_rate: float | None = None
    # asked (question, what to type) after the steps are shown and before the first one runs;
    # None: the caller confirmed already (tests, automation that decided)
    confirm: Confirm | None = None

    def __post_init__(self) -> None:
        from orchestrator.aws import AwsContext

        self.ctx = AwsContext(endpoint_url=self.app.endpoint_url)
        if self.registry is None:
            # member regions share one account (the topology refuses otherwise): the primary's role
            self.registry = RegistryPort(self._region_ctx(self.app.topology().primary), self.app.env, self.app.state,
                                         self.app.topology().residency, self.sync_rate,
                                         retained_topics=self.app.topology().registry.retained_topics)

    def _dns_ctx(self) -> AwsContext:
        """Route 53 and the ARC cluster: the DNS account's role when the topology names one."""
        return self.ctx.assuming(self.app.topology().role_for("dns"))

    def _region_ctx(self, region: str) -> AwsContext:
        return self.ctx.assuming(self.app.topology().role_for(region))

    # -- persisted state ---------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.app.state.lifecycle_path(self.app.env)

    def _load(self) -> dict[str, Any]:
        try:
            data = self.app.state.load(self.state_path)
        except (OSError, InputRejected):
            return {}
        return data if isinstance(data, dict) else {}

    def _store(self, data: dict[str, Any]) -> None:
        self.app.state.save(self.state_path, data)

    def _runner(self, topology: Topology) -> Runner:
        return Runner(self.app.engine(), topology, self.app.state, notify=self.app.notify)

    def _save_topology(self, topology: Topology) -> None:
        save(topology, self.app.config_path)
        self.app.reload_topology()

    def _up(self, topology: Topology, ref: StackRef) -> RunReport:
        from orchestrator.operations.replace_guard import check_lifecycle_up

        check_lifecycle_up(self.app, topology, [ref])  # no stateful replace in a live region
        return require_ok(self._runner(topology).up([ref]))

    def _verify_dns(self, topology: Topology) -> None:
        zone_id = verify.hosted_zone_id(self._dns_ctx(), topology.hosted_zone)
        engine = self.app.engine()
        endpoints = []
        for region in dns_targets(topology):
            ref = region_stack(topology, region)
            outputs = wiring.validate_region_outputs(ref.name, region, engine.outputs(ref.name) or {})
            endpoints.append((region, outputs.endpoint))
        records = verify.dns_records(self._dns_ctx(), zone_id, topology.domain)
        verify.expect_dns(records, topology.routing.value, endpoints)

    def _switch_dns(self, before: Topology, after: Topology) -> None:
        """Move DNS from `before` to `after`; verified; on any failure the previous records go back."""
        engine, notify = self.app.engine(), self.app.notify
        try:
            require_ok(transition_dns(engine, before, after, self.app.state, notify))
            self._verify_dns(after)
        except OperationFailed as exc:
            self.app.notify(f"DNS switch failed ({exc.one_line()}): putting the previous records back")
            try:
                require_ok(transition_dns(engine, after, before, self.app.state, notify))
                self._verify_dns(before)
            except OperationFailed as back:
                raise OperationFailed(f"DNS switch failed and the rollback failed too: {back.one_line()}",
                                      hint="inspect the records with `orchestrate status` and re-run") from None
            raise OperationFailed(f"DNS switch failed, previous records restored: {exc.one_line()}") from None

    # -- promote-secondary ---------------------------------------------------------------------
    def promote_steps(self, topology: Topology, region: str, routing: RoutingMode) -> list[Step]:
        env = topology.env
        return [
            Step("preflight", "topology valid, region allowed by residency and not a member yet, primary stack up, "
                              "hosted zone present"),
            Step("record-secondary", f"add {region} to {topology.source} as a secondary (routing unchanged)"),
            Step("region-stack", f"up the region stack; verify its outputs and the domain configuration in {region}",
                 (f"{env}-region-{region}",)),
            Step("registry-sync",
                 f"sync the registry {topology.primary} -> {region}; verify counts and certificate ids"),
            Step("replication", f"up the replication stack; verify the primary bucket replicates to {region}",
                 (f"{env}-replication",)),
            Step("dns", f"switch DNS to {routing.value} routing with health checks; verify the records "
                        "(failure: previous records restored)", (f"{env}-dns",)),
            Step("mark-routing", f"record routing: {routing.value} in {topology.source}"),
        ]

    def promote(self, region: str, routing: RoutingMode, *, dry_run: bool = False) -> LifecycleReport:
        guards.check_primary(self.app, controls=False)
        topology = self.app.topology()
        if routing is RoutingMode.SINGLE:
            raise InputRejected("--routing must be failover or latency for two or more regions")
        guards.check_residency(topology, region)
        steps = self.promote_steps(topology, region, routing)
        saved = self._load()
        resuming = saved.get("operation") == "promote" and saved.get("region") == region \
            and saved.get("status") != "done"
        if region in topology.regions and not resuming:
            raise InputRejected(f"{region} is already a member of env {topology.env}")
        if not resuming:
            saved = {"operation": "promote", "region": region, "routing": routing.value, "status": "running",
                     "previous_routing": topology.routing.value, "primary": topology.primary, "done": [],
                     "started": _now()}
        elif saved.get("routing") != routing.value:
            raise InputRejected(f"a promotion of {region} to {saved['routing']} routing is in progress; "
                                f"re-run it with --routing {saved['routing']}")
        if dry_run:
            return self._promote_dry_run(topology, region, routing, steps, saved)
        notices = [f"resuming the promotion of {region} after: {', '.join(saved['done'])}"] if resuming else []
        actions: dict[str, Callable[[], str]] = {
            "preflight": lambda: self._preflight(region),
            "record-secondary": lambda: self._record_secondary(region),
            "region-stack": lambda: self._region_stack(region),
            "registry-sync": lambda: self._registry_sync(self.app.topology().primary, region),
            "replication": lambda: self._replication(region, routing),
            "dns": lambda: self._dns(routing, region),
            "mark-routing": lambda: self._mark_routing(routing),
        }
        return self._steps("promote-secondary", region, steps, actions, saved, notices)

    def _promote_dry_run(self, topology: Topology, region: str, routing: RoutingMode, steps: list[Step],
                         saved: dict[str, Any]) -> LifecycleReport:
        """Run the preflight checks (read-only) and preview, per stack, what the promotion would
        change; nothing is written. Not ok when the preflight fails."""
        from orchestrator.operations.change_preview import preview_changes, stack_line

        try:
            checked: tuple[str, str] = ("passed", self._preflight(region))
        except OrchestrateError as exc:
            checked = ("failed", exc.one_line())
        lines: dict[str, str] = {}
        if checked[0] == "passed":
            after = topology if region in topology.secondaries else topology.with_secondary(region)
            after = after.with_routing(routing).with_unrouted(after.unrouted - {region})
            refs = [region_stack(after, region), replication_stack(after), dns_stack(after)]
            preview = preview_changes(self.app.engine(), after, refs, before=topology)
            lines = {p.stack: stack_line(p) for p in preview.stacks}
        outcomes = []
        for step in steps:
            if step.name == "preflight" and step.name not in saved["done"]:
                outcomes.append(StepOutcome(step.name, checked[0], checked[1]))
                continue
            detail = step.does
            for stack in step.stacks:
                detail += f"; would change {lines[stack]}" if stack in lines else f" [stack: {stack}: not previewed]"
            outcomes.append(StepOutcome(step.name, "done earlier" if step.name in saved["done"] else "planned",
                                        detail))
        return LifecycleReport("promote-secondary (dry run)", topology.env, region, tuple(outcomes))

    def _steps(self, operation: str, region: str, steps: list[Step], actions: dict[str, Callable[[], str]],
               saved: dict[str, Any], notices: list[str]) -> LifecycleReport:
        from orchestrator.scrub import scrub

        if self.confirm is not None:
            todo = [s for s in steps if s.name not in saved["done"]]
            for step in todo:
                self.app.notify(f"[{operation}] will {step.name}: {step.does}")
            self.confirm(f"{operation} {region} in env {self.app.env} ({len(todo)} steps)", region)
        outcomes: list[StepOutcome] = []
        self._store(saved)
        for step in steps:
            if step.name in saved["done"]:
                outcomes.append(StepOutcome(step.name, "skipped", "done earlier"))
                continue
            self.app.notify(f"[{operation}] {step.name}: {step.does}")
            try:
                detail = actions[step.name]()
            except OperationFailed as exc:
                error = scrub(exc.one_line())  # the state file and the report hold no secret an error echoed
                saved.update(status="failed", failed_step=step.name, error=error)
                self._store(saved)
                outcomes.append(StepOutcome(step.name, "failed", error))
                break
            except BaseException as exc:
                # a refusal inside a step (an ARC safety rule), bad input, a lock or Ctrl-C ends the
                # run with its own exit code; the record says where it stopped instead of "running"
                status = "refused" if isinstance(exc, GuardRefused) else \
                    "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                reason = exc.one_line() if isinstance(exc, OrchestrateError) else type(exc).__name__
                saved.update(status=status, failed_step=step.name, error=scrub(reason))
                self._store(saved)
                raise
            saved["done"].append(step.name)
            self._store(saved)
            outcomes.append(StepOutcome(step.name, "done", detail))
        else:
            saved.update(status="done", finished=_now(), primary=self.app.topology().primary)
            saved.pop("failed_step", None)
            self._store(saved)
        report = LifecycleReport(operation, self.app.env, region, tuple(outcomes), tuple(notices))
        return replace(report, follow_ups=follow_ups(self.app.topology(), saved)) if report.ok else report

    def _preflight(self, region: str) -> str:
        topology = self.app.topology()
        guards.check_residency(topology, region)
        primary = region_stack(topology, topology.primary)
        outputs = self.app.engine().outputs(primary.name)
        if not outputs:
            raise InputRejected(f"the primary stack {primary.name} is not up",
                                hint=f"run `orchestrate up --region {topology.primary}` first")
        wiring.validate_region_outputs(primary.name, topology.primary, outputs)
        zone = verify.hosted_zone_id(self._dns_ctx(), topology.hosted_zone)
        return f"primary {topology.primary} up, zone {topology.hosted_zone} ({zone}) present"

    def _record_secondary(self, region: str) -> str:
        topology = self.app.topology()
        # held out of DNS until this promotion's DNS step marks it routed: a routine `up` meanwhile
        # (latency routing lists every member) must not send devices to an unsynced region
        self.app.record_unrouted(self.app.unrouted_regions() | {region})
        if region not in topology.secondaries:
            self._save_topology(topology.with_secondary(region))
        return f"{region} recorded as a secondary, not routed yet (routing {topology.routing.value})"

    def _region_stack(self, region: str) -> str:
        topology = self.app.topology()
        ref = region_stack(topology, region)
        self._up(topology, ref)
        outputs = wiring.validate_region_outputs(ref.name, region, self.app.engine().outputs(ref.name) or {})
        verify.domain_configuration(self._region_ctx(region), region, outputs.domain_configuration_name,
                                    topology.domain)
        return f"endpoint {outputs.endpoint}, domain configuration {outputs.domain_configuration_name} enabled"

    def _registry_sync(self, src: str, dst: str) -> str:
        assert self.registry is not None
        summary = self.registry.sync(src, dst)
        counts = self.registry.verify(src, dst)
        self._record_sync(src, dst)
        return (f"registry {src} -> {dst} in sync: {counts['things']} things, {counts['certificates']} "
                f"certificates ({summary.get('write_calls', '?')} write calls)")

    def _carry_jobs(self, src: str, dst: str) -> str:
        """In-flight jobs follow the active region (`orchestrator.registry.jobs`); the mapping of
        carried jobs is run state, saved after each change."""
        from orchestrator.aws import aws_errors, client
        from orchestrator.registry.calls import Caller, RetryPolicy
        from orchestrator.registry.jobs import carry_in_flight
        from orchestrator.registry.quotas import AdaptiveLimiter, QuotaTable

        path = self.app.state.jobs_record_path(self.app.env)
        try:
            loaded = self.app.state.load(path)
        except (OSError, InputRejected):
            loaded = None
        record: dict[str, Any] = loaded if isinstance(loaded, dict) else {}

        def caller(region: str) -> Caller:
            return Caller(client(self._region_ctx(region), "iot", region, own_retries=True),
                          limits=AdaptiveLimiter(QuotaTable()), retry=RetryPolicy())

        with aws_errors(f"carrying in-flight jobs {src} -> {dst}"):
            report = carry_in_flight(caller(src), caller(dst), record=record,
                                     save=lambda r: self.app.state.save(path, r))
        for note in report.notes:
            self.app.notify(f"[jobs] {note}")
        if not report.ok:
            bad = [j for j in report.jobs if not j.ok]
            first = "; ".join(f"{j.src_job}: {j.why}" for j in bad[:3])
            raise OperationFailed(f"in-flight jobs {src} -> {dst}: {len(bad)} not carried ({first})",
                                  hint="fix the cause and re-run the command: carried jobs are found, not made again")
        return report.summary()

    def _sync_records(self) -> dict[str, Any]:
        try:
            data = self.app.state.load(self.app.state.sync_record_path(self.app.env))
        except (OSError, InputRejected):
            return {}
        return data if isinstance(data, dict) else {}

    def _record_sync(self, src: str, dst: str) -> None:
        data = self._sync_records()
        data[f"{src}->{dst}"] = time.time()
        self.app.state.save(self.app.state.sync_record_path(self.app.env), data)

    def _last_sync(self, src: str, dst: str) -> float | None:
        try:
            return float(self._sync_records()[f"{src}->{dst}"])
        except (KeyError, TypeError, ValueError):
            return None

    def _replication(self, region: str, routing: RoutingMode) -> str:
        topology = self.app.topology()
        # the stack is applied once, with the routing the promotion ends in (where devices connect,
        # so where its rules and functions must be): up with the routing of before, it would differ
        # from what `preview` and `up --all` render once the promotion is done (rules missing in
        # the new region). DNS still does not answer the region before the dns step.
        self._up(topology.with_routing(routing), replication_stack(topology))
        engine = self.app.engine()
        primary = wiring.validate_region_outputs(region_stack(topology, topology.primary).name, topology.primary,
                                                 engine.outputs(region_stack(topology, topology.primary).name) or {})
        target = wiring.validate_region_outputs(region_stack(topology, region).name, region,
                                                engine.outputs(region_stack(topology, region).name) or {})
        found = verify.replication_targets(self._region_ctx(topology.primary), topology.primary, primary.bucket_name)
        if target.bucket_arn not in found:
            raise OperationFailed(f"bucket {primary.bucket_name} does not replicate to {target.bucket_arn} "
                                  f"(rules name: {', '.join(found) or 'none'})")
        return f"{primary.bucket_name} replicates to {target.bucket_name}"

    def _dns(self, routing: RoutingMode, region: str) -> str:
        before = self.app.topology()
        after = before.with_routing(routing).with_unrouted(before.unrouted - {region})
        self._switch_dns(before, after)
        detail = ""
        if after.failover_control is FailoverControl.ARC:
            # new routing controls start Off: the routed regions take traffic once they are On
            result = self._set_controls(after, {r: ControlState.ON for r in dns_targets(after)}, avoid=())
            detail = (f"; routing controls On: {', '.join(sorted(result.states))} (via {result.endpoint_region})"
                      f"{_waited(result)}")
        self.app.record_unrouted(after.unrouted)  # the promotion's DNS step marks the region routed
        # The scheduled readiness check (declared by the replication stack, applied before DNS) reads
        # the health checks and routing controls DNS has only now: applied again with them, so it
        # checks what is live and `preview --expect-no-changes` agrees with what is deployed.
        self._up(after, replication_stack(after))
        detail += "; the scheduled readiness check re-wired to the new health checks"
        return f"DNS routes {before.domain} by {routing.value} to {', '.join(dns_targets(after))}{detail}"

    # -- ARC routing controls (data plane only) ------------------------------------------------
    def _arc_wiring(self, topology: Topology) -> ArcWiring:
        outputs = self.app.engine().outputs(dns_stack(topology).name) or {}
        return ArcWiring.from_outputs(outputs)

    def _set_controls(self, topology: Topology, states: dict[str, ControlState], *,
                      avoid: tuple[str, ...]) -> ControlResult:
        wiring_ = self._arc_wiring(topology)
        result = set_states(self._dns_ctx(), wiring_, states, avoid=avoid)
        read = read_states(self._dns_ctx(), wiring_, avoid=avoid)  # may wait out the change's wait period
        wrong = {r: s.value for r, s in states.items() if read.states.get(r) is not s}
        if wrong:
            raise OperationFailed(f"routing controls read back differently: {wrong}")
        return replace(result, calls=(*result.calls, *read.calls), waited_s=round(result.waited_s + read.waited_s, 3),
                       throttled_s=round(result.throttled_s + read.throttled_s, 3))

    def _mark_routing(self, routing: RoutingMode) -> str:
        topology = self.app.topology()
        if topology.routing is not routing:
            self._save_topology(topology.with_routing(routing))
        return f"routing: {routing.value} recorded"

    # -- failover / failback -------------------------------------------------------------------
    def failover(self, to: str) -> LifecycleReport:
        guards.check_primary(self.app, controls=False)
        topology = self.app.topology()
        if to == topology.primary:
            raise InputRejected(f"{to} is already the primary of env {topology.env}")
        if to not in topology.secondaries:
            raise InputRejected(f"{to} is not a secondary of env {topology.env} "
                                f"(secondaries: {', '.join(topology.secondaries) or 'none'})")
        if to not in dns_targets(topology):
            raise InputRejected(f"{to} is not verified for traffic yet (routing {topology.routing.value})",
                                hint=f"finish `orchestrate promote-secondary --region {to}` first")
        old = topology.primary
        arc = topology.failover_control is FailoverControl.ARC
        latency = topology.routing is RoutingMode.LATENCY
        others = frozenset(r for r in dns_targets(topology) if r != to)
        if arc:
            move = Step("routing-controls", f"ARC data plane: {to} On, {', '.join(sorted(others))} Off, in one call "
                                            f"(cluster endpoints in turn, none in {old}); no record changes")
        elif latency:
            move = Step("dns", f"take {', '.join(sorted(others))} out of latency routing; verify the records")
        else:
            move = Step("dns", f"the PRIMARY record (set identifier `primary`) moves to {to}, the SECONDARY "
                               f"to {old}: one UPSERT each; verify the records")
        steps = [Step("check-target", f"{to}'s stack is up and its outputs pass the contract"),
                 Step("final-sync", f"sync the registry {old} -> {to} if {old} answers within "
                                    f"{verify.PROBE_TIMEOUT_S:g} s"),
                 Step("carry-jobs", f"if {old} answered: its in-flight jobs move to {to} for the things that have "
                                    f"not finished them, and are cancelled in {old}; verified"),
                 move,
                 Step("record-primary", f"record {to} as primary in {topology.source}")]
        notices: list[str] = []

        answered: dict[str, bool] = {}  # the final sync's probe, reused: nothing else waits on a failed region

        def final_sync() -> str:
            answered[old] = verify.region_answers(self._region_ctx(old), old)
            if answered[old]:
                return self._registry_sync(old, to)
            last = self._last_sync(old, to)
            age = _age(time.time() - last) if last else "an unknown time (no sync on record)"
            notices.append(f"{old} does not answer (probe timeout {verify.PROBE_TIMEOUT_S:g} s): {to}'s registry "
                           f"may be stale by {age} since the last sync; devices provisioned since then must be "
                           f"re-registered after failback")
            return f"skipped: {old} may be stale by {age}"

        def carry_jobs() -> str:
            if not answered.get(old, True):
                notices.append(f"in-flight jobs of {old} were not carried ({old} does not answer): they stay "
                               f"there, and devices resume them after failback")
                return f"skipped: {old} does not answer"
            return self._carry_jobs(old, to)

        after = topology.with_primary(to)
        held = others if latency and not arc else frozenset()

        def move_traffic() -> str:
            if arc:
                result = self._set_controls(topology, only(to, dns_targets(topology)), avoid=(old,))
                return (f"routing controls: {to} On, {', '.join(sorted(others)) or 'none'} Off "
                        f"(via the {result.endpoint_region} endpoint){_waited(result)}")
            if held:
                target = after.with_unrouted(topology.unrouted | held)
                self._switch_dns(topology, target)
                self.app.record_unrouted(target.unrouted)
                return f"latency records of {', '.join(sorted(held))} removed; DNS answers {to}"
            return self._move_primary(topology, after)

        actions = {
            "check-target": lambda: self._check_up(topology, to),
            "final-sync": final_sync,
            "carry-jobs": carry_jobs,
            move.name: move_traffic,
            "record-primary": lambda: self._record_primary(after),
        }
        saved = {"operation": "failover", "region": to, "from": old, "status": "running", "done": [],
                 "held": sorted(held), "started": _now()}
        return self._steps("failover", to, steps, actions, saved, notices)

    def failback(self, to: str | None = None) -> LifecycleReport:
        guards.check_primary(self.app, controls=False)
        topology = self.app.topology()
        saved = self._load()
        # a failover, or a rebuild from backups (rebuild-region), is what a failback reverses
        reversible = saved.get("operation") in ("failover", "rebuild")
        target = to or (saved.get("from") if reversible else None)
        if not target:
            raise InputRejected("no failover on record to reverse", hint="pass --to REGION")
        if target not in topology.secondaries:
            raise InputRejected(f"{target} is not a secondary of env {topology.env}")
        current = topology.primary
        held = frozenset(saved.get("held", [])) if reversible else frozenset()
        after = topology.with_primary(target).with_unrouted(topology.unrouted - held)
        arc = topology.failover_control is FailoverControl.ARC
        if arc:
            states = self._failback_states(after, target)
            on = sorted(r for r, st in states.items() if st is ControlState.ON)
            move = Step("routing-controls", f"ARC data plane: {', '.join(on)} On (one call); no record changes")
        else:
            move = Step("dns", f"DNS sends traffic back to {target}; verify the records")
        steps = [Step("check-target", f"{target}'s stack is up and its outputs pass the contract"),
                 Step("sync-back", f"sync the registry {current} -> {target} (devices provisioned during the outage)"),
                 Step("carry-jobs", f"{current}'s in-flight jobs move back to {target} for the things that have "
                                    f"not finished them, and are cancelled in {current}; verified"),
                 move,
                 Step("record-primary", f"record {target} as primary in {topology.source}")]

        def move_traffic() -> str:
            if arc:
                result = self._set_controls(topology, states, avoid=())
                return (f"routing controls: {', '.join(on)} On (via the {result.endpoint_region} endpoint)"
                        f"{_waited(result)}")
            self._switch_dns(topology, after)
            self.app.record_unrouted(after.unrouted)
            return f"DNS primary is now {target}"

        actions = {
            "check-target": lambda: self._check_up(topology, target),
            "sync-back": lambda: self._registry_sync(current, target),
            "carry-jobs": lambda: self._carry_jobs(current, target),
            move.name: move_traffic,
            "record-primary": lambda: self._record_primary(after),
        }
        state: dict[str, Any] = {"operation": "failback", "region": target, "from": current, "status": "running",
                                 "done": [], "started": _now()}
        return self._steps("failback", target, steps, actions, state, [])

    @staticmethod
    def _failback_states(after: Topology, target: str) -> dict[str, ControlState]:
        """Normal operation again: every routed region On, when that sends traffic to `target` (latency,
        or `target` holds the PRIMARY record); else `target` alone On."""
        routed = dns_targets(after)
        if after.routing is RoutingMode.LATENCY or routed[:1] == (target,):
            return {r: ControlState.ON for r in routed}
        return only(target, routed)

    def _move_primary(self, before: Topology, after: Topology) -> str:
        self._switch_dns(before, after)
        return f"DNS primary is now {after.primary}"

    def _record_primary(self, after: Topology) -> str:
        self._save_topology(after)
        return f"{after.primary} recorded as primary"

    def _check_up(self, topology: Topology, region: str) -> str:
        ref = region_stack(topology, region)
        outputs = self.app.engine().outputs(ref.name)
        if not outputs:
            raise OperationFailed(f"{ref.name} is not deployed")
        o = wiring.validate_region_outputs(ref.name, region, outputs)
        return f"{ref.name} up, endpoint {o.endpoint}"


def follow_ups(topology: Topology, record: dict[str, Any]) -> tuple[str, ...]:
    """After a transition: the topology file it wrote must reach git before any other machine (or
    apply.yml) renders DNS, and `up --all` re-wires replication and DNS to the new roles."""
    what = f"{record.get('operation')} {record.get('region')}, primary {topology.primary}"
    return (f"commit {topology.source} ({what}) and merge it (a pull request): until then every other clone "
            f"and CI refuse `up`, `preview` and `drift` (exit 2) rather than move traffic back",
            "then run `orchestrate up --all` (or let apply.yml run it) to re-wire replication and DNS to the new "
            "roles")


def _age(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"



def _waited(result: ControlResult) -> str:
    """How long a routing-control change waited out the safety rule's wait period, and backed off
    ARC's throttling, when it did."""
    out = f"; waited {result.waited_s:.1f} s for the safety rule's wait period" if result.waited_s else ""
    if result.throttled_s:
        out += f"; backed off {result.throttled_s:.1f} s for ARC's request rate (throttled)"
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = ["Lifecycle", "LifecycleReport", "RegistryPort"]
