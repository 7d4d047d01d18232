"""The stack graph: which stacks an environment has, what depends on what, and in which waves.

Per environment E: `E-region-<region>` for every member region, `E-dns` (depends on every region
stack) and, with two or more regions, `E-replication` (depends on the region stacks it joins).
Independent stacks of one wave run in parallel; destroy runs the waves in reverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from orchestrator.errors import InputRejected
from orchestrator.topology import FailoverControl, RoutingMode, Topology


class StackKind(str, Enum):
    REGION = "region"
    DNS = "dns"
    REPLICATION = "replication"


@dataclass(frozen=True, order=True)
class StackRef:
    name: str
    kind: StackKind
    region: str  # the region stack's region; for dns/replication the region its provider is set to

    def __str__(self) -> str:
        return self.name


def region_stack_name(env: str, region: str) -> str:
    return f"{env}-region-{region}"


def dns_stack_name(env: str) -> str:
    return f"{env}-dns"


def replication_stack_name(env: str) -> str:
    return f"{env}-replication"


def region_stack(topology: Topology, region: str) -> StackRef:
    return StackRef(region_stack_name(topology.env, region), StackKind.REGION, region)


# Route 53 is global; its API lives in us-east-1. The DNS stack's provider region is pinned there so
# that moving the primary (failover) never changes the provider configuration of the DNS records.
DNS_PROVIDER_REGION = "us-east-1"


def dns_stack(topology: Topology) -> StackRef:
    return StackRef(dns_stack_name(topology.env), StackKind.DNS, DNS_PROVIDER_REGION)


def replication_stack(topology: Topology) -> StackRef:
    return StackRef(replication_stack_name(topology.env), StackKind.REPLICATION, topology.primary)


def all_stacks(topology: Topology) -> list[StackRef]:
    stacks = [region_stack(topology, r) for r in topology.regions]
    stacks.append(dns_stack(topology))
    if topology.multi_region:
        stacks.append(replication_stack(topology))
    return stacks


def dependencies(topology: Topology) -> dict[str, tuple[str, ...]]:
    """stack name -> names of the stacks whose outputs it consumes."""
    regions = tuple(region_stack_name(topology.env, r) for r in topology.regions)
    deps: dict[str, tuple[str, ...]] = {name: () for name in regions}
    deps[dns_stack_name(topology.env)] = regions
    if topology.multi_region:
        # The command contract orders `up` as regions, then DNS, then replication: replication
        # consumes the region stacks' outputs and is sequenced after DNS, so a run that could not
        # route devices stops before it starts copying data between regions.
        deps[replication_stack_name(topology.env)] = (*regions, dns_stack_name(topology.env))
    return deps


def dns_targets(topology: Topology) -> tuple[str, ...]:
    """The regions DNS routes devices to, in routing order (the PRIMARY record's region first).

    Regions in `topology.unrouted` (a promotion that has not reached its DNS step, or regions a
    latency failover took out) are left out: DNS never answers a region that is not ready. With
    `failover_control: arc` the failover pair is ordered home region first, so the records never
    change roles when the primary moves: routing controls decide who answers.
    """
    if topology.routing is RoutingMode.SINGLE:
        return (topology.primary,)
    if topology.routing is RoutingMode.FAILOVER:
        pair = tuple(r for r in (topology.primary, topology.secondaries[0]) if r not in topology.unrouted)
        if topology.failover_control is FailoverControl.ARC and topology.home_region in pair:
            pair = (topology.home_region, *(r for r in pair if r != topology.home_region))
        return pair
    return tuple(r for r in topology.regions if r not in topology.unrouted)


def waves(nodes: Sequence[str], deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Kahn levels over `nodes`; dependencies outside `nodes` count as already satisfied."""
    selected = set(nodes)
    remaining = {n: {d for d in deps.get(n, ()) if d in selected} for n in nodes}
    result: list[list[str]] = []
    while remaining:
        ready = sorted(n for n, ds in remaining.items() if not ds)
        if not ready:
            raise InputRejected(f"stack graph has a cycle among {sorted(remaining)}")
        result.append(ready)
        for n in ready:
            del remaining[n]
        for ds in remaining.values():
            ds.difference_update(ready)
    return result


def up_selection(topology: Topology, region: str | None) -> list[StackRef]:
    """Stacks `up` touches: one region (or all), then DNS, then replication if multi-region."""
    if region is not None and region not in topology.regions:
        raise InputRejected(
            f"{region} is not a member of env {topology.env} (members: {', '.join(topology.regions)})",
            hint="use promote-secondary to add a region",
        )
    regions = topology.regions if region is None else (region,)
    chosen = [region_stack(topology, r) for r in regions]
    chosen.append(dns_stack(topology))
    if topology.multi_region:
        chosen.append(replication_stack(topology))
    return chosen


def plan_waves(topology: Topology, selection: Sequence[StackRef]) -> list[list[StackRef]]:
    by_name = {s.name: s for s in selection}
    return [[by_name[n] for n in wave] for wave in waves(list(by_name), dependencies(topology))]


def render_mermaid(topology: Topology) -> str:
    """The stack DAG and the region topology (primary, DNS mode, replication arrows)."""
    lines = ["flowchart LR"]
    env = topology.env
    routed = set(dns_targets(topology))
    dns = dns_stack_name(env)
    lines.append(f'  {_id(dns)}["{dns}<br/>{topology.domain} ({topology.routing.value})"]')
    for region in topology.regions:
        stack = region_stack_name(env, region)
        role = topology.role(region)
        lines.append(f'  {_id(stack)}["{stack}<br/>{role}"]')
        arrow = "-->" if region in routed else "-.->"
        label = "routed" if region in routed else "not routed"
        lines.append(f"  {_id(stack)} {arrow}|{label}| {_id(dns)}")
    if topology.multi_region:
        rep = replication_stack_name(env)
        lines.append(f'  {_id(rep)}["{rep}"]')
        primary = region_stack_name(env, topology.primary)
        lines.append(f"  {_id(primary)} --> {_id(rep)}")
        for region in topology.secondaries:
            lines.append(f"  {_id(rep)} ==>|s3 + registry| {_id(region_stack_name(env, region))}")
    return "\n".join(lines) + "\n"


def graph_document(topology: Topology) -> dict[str, object]:
    """The stack DAG as data (`orchestrate graph --json`): the same nodes and edges as the
    pictures, plus the waves `up` runs (destroy runs them in reverse)."""
    env = topology.env
    routed = dns_targets(topology)
    nodes: list[dict[str, object]] = []
    for ref in all_stacks(topology):
        node: dict[str, object] = {"stack": ref.name, "kind": ref.kind.value, "region": ref.region}
        if ref.kind is StackKind.REGION:
            node.update(role=topology.role(ref.region), routed=ref.region in routed)
        elif ref.kind is StackKind.DNS:
            node.update(domain=topology.domain, routing=topology.routing.value)
        nodes.append(node)
    edges = [{"from": dep, "to": name, "relation": "outputs"}
             for name, deps in dependencies(topology).items() for dep in deps]
    if topology.multi_region:
        rep = replication_stack_name(env)
        edges += [{"from": rep, "to": region_stack_name(env, r), "relation": "replicates-to"}
                  for r in topology.secondaries]
    return {
        "env": env,
        "primary": topology.primary,
        "secondaries": list(topology.secondaries),
        "routing": topology.routing.value,
        "routed": list(routed),
        "nodes": nodes,
        "edges": edges,
        "waves": waves([n["stack"] for n in nodes], dependencies(topology)),  # type: ignore[misc]
    }


def render_dot(topology: Topology) -> str:
    env = topology.env
    routed = set(dns_targets(topology))
    dns = dns_stack_name(env)
    lines = ["digraph stacks {", "  rankdir=LR;", f'  "{dns}" [label="{dns}\\n{topology.domain} '
             f'({topology.routing.value})"];']
    for region in topology.regions:
        stack = region_stack_name(env, region)
        lines.append(f'  "{stack}" [label="{stack}\\n{topology.role(region)}"];')
        style = "solid" if region in routed else "dashed"
        lines.append(f'  "{stack}" -> "{dns}" [style={style}];')
    if topology.multi_region:
        rep = replication_stack_name(env)
        lines.append(f'  "{region_stack_name(env, topology.primary)}" -> "{rep}";')
        for region in topology.secondaries:
            lines.append(f'  "{rep}" -> "{region_stack_name(env, region)}" [label="s3 + registry", style=bold];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _id(name: str) -> str:
    return name.replace("-", "_")
