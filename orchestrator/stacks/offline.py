"""The offline plan: evaluate the programs under Pulumi's mocks, no credentials, no Pulumi CLI.

Region stacks are evaluated first; their mocked outputs go through the same wiring contract as a
real `up` before they feed the DNS and replication stacks, so the plan also checks the wiring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.engine.types import OutputValue
from orchestrator.stacks import wiring
from orchestrator.stacks.graph import StackKind, StackRef, dns_targets, plan_waves, region_stack, up_selection
from orchestrator.topology import Topology


@dataclass(frozen=True)
class PlannedResource:
    type: str
    name: str
    protected: bool = False


@dataclass(frozen=True)
class PlannedStack:
    name: str
    kind: str
    region: str
    resources: tuple[PlannedResource, ...]


@dataclass(frozen=True)
class Plan:
    env: str
    waves: tuple[tuple[str, ...], ...]
    stacks: dict[str, PlannedStack]

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "waves": [list(w) for w in self.waves],
            "stacks": {
                name: {
                    "kind": s.kind,
                    "region": s.region,
                    "resources": [
                        {"type": r.type, "name": r.name, **({"protected": True} if r.protected else {})}
                        for r in s.resources
                    ],
                }
                for name, s in self.stacks.items()
            },
        }


def offline_plan(topology: Topology, region: str | None = None) -> Plan:
    from programs import mocks  # deferred: imports pulumi and pulumi_aws

    selection = up_selection(topology, region)
    waves = plan_waves(topology, selection)
    evaluated: dict[str, Any] = {}
    outputs: dict[str, wiring.RegionOutputs] = {}

    def region_eval(r: str) -> Any:
        ref = region_stack(topology, r)
        if ref.name not in evaluated:
            ev = mocks.evaluate(wiring.region_args(topology, r), stack=ref.name)
            raw = {k: OutputValue(v) for k, v in ev.outputs.items()}
            outputs[r] = wiring.validate_region_outputs(ref.name, r, raw)
            evaluated[ref.name] = ev
        return evaluated[ref.name]

    stacks: dict[str, PlannedStack] = {}
    for wave in waves:
        for ref in wave:
            if ref.kind is StackKind.REGION:
                ev = region_eval(ref.region)
            else:
                needed = dns_targets(topology) if ref.kind is StackKind.DNS else topology.regions
                for r in needed:
                    region_eval(r)
                args = (wiring.dns_args(topology, outputs) if ref.kind is StackKind.DNS
                        else wiring.replication_args(topology, outputs, readiness=offline_readiness(topology)))
                ev = mocks.evaluate(args, stack=ref.name)
            stacks[ref.name] = _planned(ref, ev)
    return Plan(topology.env, tuple(tuple(s.name for s in w) for w in waves), stacks)


def _planned(ref: StackRef, ev: Any) -> PlannedStack:
    return PlannedStack(
        name=ref.name, kind=ref.kind.value, region=ref.region,
        resources=tuple(PlannedResource(r.type, r.name, bool(r.protect)) for r in ev.resources),
    )


def offline_readiness(topology: Topology) -> str:
    """The scheduled readiness function's configuration as far as it is known without the engine."""
    from orchestrator.readiness import deploy

    return deploy.encode(deploy.function_config(topology, lambda _: None, backend_url=None, secrets_provider=None))
