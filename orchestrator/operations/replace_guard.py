"""The live-replacement guard: `up` never replaces or deletes a stateful resource of a live region
without an explicit, confirmed `--allow-replace URN` (docs/architecture.md, "Safety guards").

Before any change, the deployed stacks `up` will update are previewed (the same machinery as
`orchestrate preview`, so the preview shown at the prompt is reused). A change is refused when it
is a replace or delete of a resource the preview already calls out as PROTECTED/STATEFUL
(`orchestrator.preview.model.STATEFUL_TYPES`, or `protect`ed by the program) and:

- in a region stack: its region is live, i.e. the region stack is deployed and the region either
  receives DNS traffic (the records the deployed DNS stack exports) or holds things (its registry
  lists at least one; a registry that cannot be read counts as holding things);
- in the DNS or replication stack: it is a replace (records and the registry-events table are
  shared by every region) while any region of the environment is live. Their deletes are the
  steps of lifecycle transitions (promote-secondary, remove-secondary, a latency failover) and are
  not refused here.

Why: a domain configuration (iot.example.com in one region) cannot take a new server certificate in
place (terraform-provider-aws forces a new resource on `server_certificate_arns`; with the explicit
name the region program sets, that is delete-then-create): every device connected to the custom
domain in that region is dropped and the new certificate can take up to an hour to be served. A
replaced bucket, stream or table loses its data; a replaced certificate or thing, its devices.

A refusal is exit 4 (a safety guard, DESIGN.md) with one line naming the stack, the resource, the
property forcing the replacement and the `--allow-replace` URN that would let it through.

A stack whose preview fails cannot be checked: that is said (one notice per stack) and `up` goes on,
as before this guard. Pulumi's `up` previews the same program with the same config first and stops
on the same error before it changes anything; only a failure that does not repeat (a network
blip) lets an unchecked `up` through. Refusing instead would block the `up` that repairs a broken
stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.errors import GuardRefused, InputRejected

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context
    from orchestrator.engine.types import Engine
    from orchestrator.preview.model import EnvironmentPreview, ResourceChange, StackPreview
    from orchestrator.stacks.graph import StackRef
    from orchestrator.topology import Topology

Confirm = Callable[[str, str], None]  # (question, what to type): cli.options.confirmer
ThingsProbe = Callable[[str], "bool | str"]  # region -> holds things? or why it could not be read

# What a replacement does to the devices or data behind each stateful type (the refusal says it).
CONSEQUENCES: Mapping[str, str] = {
    "aws:iot/domainConfiguration:DomainConfiguration":
        "every device connected to {domain} in {region} is dropped and cannot reconnect until the new "
        "configuration serves its certificate (up to an hour)",
    "aws:iot/certificate:Certificate": "the devices using this certificate cannot connect in {region}",
    "aws:iot/caCertificate:CaCertificate": "devices registered under this CA cannot connect in {region}",
    "aws:iot/thing:Thing": "devices and rules naming this thing lose it in {region}",
    "aws:iot/thingType:ThingType": "things of this type lose it in {region}",
    "aws:iot/thingGroup:ThingGroup": "the group's members and policies are lost in {region}",
    "aws:s3/bucket:Bucket": "the data lake objects in it are lost",
    "aws:s3/bucketV2:BucketV2": "the data lake objects in it are lost",
    "aws:kinesis/stream:Stream": "telemetry still in the stream is lost",
    "aws:dynamodb/table:Table": "the records in it are lost",
    "aws:dynamodb/tableReplica:TableReplica": "the replica's records are lost",
    "aws:route53/record:Record": "devices resolving {domain} get no answer while it is recreated",
}


@dataclass(frozen=True)
class Refusal:
    """One replace or delete `up` may not run without `--allow-replace`."""

    stack: str
    region: str  # the region stack's region; "" for the DNS and replication stacks
    change: ResourceChange
    why: str  # "receives DNS traffic", "holds things", ...
    domain: str

    @property
    def forced_by(self) -> str:
        from orchestrator.preview.model import Op

        if self.change.op is Op.DELETE:
            return "removed from the program"
        if self.change.replace_keys:
            return "forced by " + ", ".join(self.change.replace_keys)
        return "the engine named no property forcing it"

    def line(self) -> str:
        short = self.change.type.rsplit(":", 1)[-1]
        where = f" in {self.region}" if self.region else ""
        consequence = CONSEQUENCES.get(self.change.type, "the data, identity or traffic it holds is lost")
        consequence = consequence.format(domain=self.domain, region=self.region or "every region")
        return (f"{self.stack}: up would {self.change.op.value} {short} {self.change.name}{where} "
                f"({self.forced_by}), which {self.why}: {consequence}")


def refusals(previews: Iterable[StackPreview], topology: Topology, *,
             live: Callable[[str], str | None]) -> list[Refusal]:
    """The replaces and deletes of protected or stateful resources in live places (see module doc).
    `live(region)` says why a region is live, or None; it is asked only for regions with such a change."""
    out: list[Refusal] = []
    any_live: str | None | bool = False  # False: not asked yet
    for stack in previews:
        for change in stack.changes:
            if not change.risky:
                continue
            if stack.kind == "region":
                why = live(stack.region)
                if why:
                    out.append(Refusal(stack.stack, stack.region, change, why, topology.domain))
                continue
            if change.op.value != "replace":
                continue  # DNS/replication deletes are the steps of lifecycle transitions
            if any_live is False:
                any_live = next((f"{r} {w}" for r in topology.regions if (w := live(r))), None)
            if any_live:
                out.append(Refusal(stack.stack, "", change, f"serves every region ({any_live})", topology.domain))
    return out


class Liveness:
    """Why a region is live (receives DNS traffic, holds things), asked lazily and once per region."""

    def __init__(self, engine: Engine, topology: Topology, things: ThingsProbe) -> None:
        self.engine = engine
        self.topology = topology
        self.things = things
        self._known: dict[str, str | None] = {}
        self._routed: set[str] | None = None

    def routed(self) -> set[str]:
        if self._routed is None:
            from orchestrator.operations.status import dns_routed_regions
            from orchestrator.stacks.graph import dns_stack

            self._routed = dns_routed_regions(self.topology, self.engine.outputs(dns_stack(self.topology).name), {})
        return self._routed

    def __call__(self, region: str) -> str | None:
        if region not in self._known:
            self._known[region] = self._why(region)
        return self._known[region]

    def _why(self, region: str) -> str | None:
        from orchestrator.stacks.graph import region_stack

        if not self.engine.outputs(region_stack(self.topology, region).name):
            return None  # not deployed: nothing of it can be replaced
        if region in self.routed():
            return "receives DNS traffic"
        holds = self.things(region)
        if holds is True:
            return "holds things (its registry lists at least one)"
        if isinstance(holds, str):
            return f"may hold things (its registry could not be read: {holds})"
        return None


def aws_things_probe(app: Context, topology: Topology) -> ThingsProbe:
    """Does the region's IoT registry list at least one thing? (ListThings, one page of one)."""

    def probe(region: str) -> bool | str:
        from orchestrator import aws
        from orchestrator.errors import OrchestrateError

        try:
            ctx = app.aws().assuming(topology.role_for(region))
            with aws.aws_errors(f"ListThings in {region}"):
                page = aws.client(ctx, "iot", region).list_things(maxResults=1)
        except OrchestrateError as exc:
            return exc.one_line()
        return bool(page.get("things"))

    return probe


def deployed(engine: Engine, selection: Sequence[StackRef]) -> list[StackRef]:
    """The stacks of `selection` that exist: only they can have something replaced or deleted."""
    return [ref for ref in selection if engine.outputs(ref.name)]


def check_up(engine: Engine, topology: Topology, selection: Sequence[StackRef], *, things: ThingsProbe,
             allow: Iterable[str] = (), confirm: Confirm | None = None,
             preview: EnvironmentPreview | None = None, notify: Callable[[str], None] = lambda _m: None,
             ) -> list[Refusal]:
    """Refuse (exit 4, nothing touched) an `up` of `selection` that would replace or delete a stateful
    resource of a live region, unless its URN is in `allow` and `confirm` agrees (each one asked).

    `preview`: the environment preview already made for the prompt (reused; else the deployed stacks
    of `selection` are previewed here). Returns the refusals that `allow` let through."""
    from orchestrator.operations.change_preview import preview_changes

    allowed = list(dict.fromkeys(allow))
    targets = deployed(engine, selection)
    if not targets and not allowed:
        return []
    names = {ref.name for ref in targets}
    if preview is None and targets:
        try:
            preview = preview_changes(engine, topology, targets)
        except NotImplementedError as exc:  # an engine without previews (the drill's local world)
            notify(f"{', '.join(sorted(names))}: not checked for replacements of stateful resources: {exc}")
            if allowed:
                raise InputRejected(f"--allow-replace {allowed[0]}: this engine cannot preview, so nothing "
                                    "can be checked against it", hint="nothing was changed") from None
            return []
    stacks = [s for s in (preview.stacks if preview else ()) if s.stack in names]
    for s in stacks:
        if s.error:
            notify(f"{s.stack}: not checked for replacements of stateful resources: its preview failed "
                   f"({s.error})")
    found = refusals([s for s in stacks if not s.error], topology, live=Liveness(engine, topology, things))
    by_urn = {r.change.urn: r for r in found}
    unknown = [u for u in allowed if u not in by_urn]
    if unknown:
        raise InputRejected(f"--allow-replace {unknown[0]}: up would not replace or delete that resource in a live "
                            f"region ({len(found)} such change{'s' if len(found) != 1 else ''} planned)",
                            hint="pass the URN the refusal names; nothing was changed")
    refused = [r for r in found if r.change.urn not in allowed]
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise GuardRefused(f"{refused[0].line()}{more}; nothing was changed",
                           hint=f"to {refused[0].change.op.value} it anyway pass --allow-replace "
                                f"'{refused[0].change.urn}' (asked to confirm)")
    for r in found:
        notify(f"allowed by --allow-replace: {r.line()}")
        if confirm is None:
            raise GuardRefused(f"{r.line()}: --allow-replace needs a confirmation here; nothing was changed")
        confirm(f"{r.stack}: really {r.change.op.value} {r.change.name}{' in ' + r.region if r.region else ''} "
                f"({r.forced_by}), which {r.why}?", f"{r.change.op.value} {r.change.name}")
    return found


def check_lifecycle_up(app: Context, topology: Topology, selection: Sequence[StackRef]) -> None:
    """The guard on the `up`s a lifecycle transition runs (promote-secondary's region and replication
    stacks): no override there; the refusal says to run `up` with `--allow-replace` first."""
    try:
        check_up(app.engine(), topology, selection, things=aws_things_probe(app, topology))
    except GuardRefused as exc:
        region = next((ref.region for ref in selection if ref.kind.value == "region"), None)
        where = f"--region {region}" if region else "--all"
        raise GuardRefused(exc.message, hint=f"if it must go, run `orchestrate up {where} --allow-replace URN` "
                                             "(the URN the preview names) first, then re-run") from None
