"""The one entry of every stack: decode the stack config (`contract`) and declare one component.

Used by `pulumi up` on the project (through `programs/__main__.py`), by the orchestrator as the
Automation API inline program, and by `programs.mocks.evaluate`, so all three run the same code.
"""

from __future__ import annotations

import pulumi

from programs import contract
from programs.contract import Component, DnsArgs, RegionArgs, ReplicationArgs

Args = RegionArgs | DnsArgs | ReplicationArgs


def component_name(args: Args) -> str:
    """Logical name of the stack's component; children are named `f"{name}-…"`."""
    if isinstance(args, RegionArgs):
        return f"iot-{args.env}-{args.region}"
    if isinstance(args, DnsArgs):
        return f"iot-{args.env}-dns"
    return f"iot-{args.env}-replication"


def decode(get: contract.Getter) -> Args:
    """Stack config -> typed args; a missing or malformed key raises ValueError naming it."""
    component = contract.component_of(get)
    if component is Component.REGION:
        return RegionArgs.from_config(get)
    if component is Component.DNS:
        return DnsArgs.from_config(get)
    return ReplicationArgs.from_config(get)


def build(args: Args) -> pulumi.ComponentResource:
    """Declare the component for `args` and export its outputs under the contract's names."""
    # Deferred: each stack imports only the component it declares.
    if isinstance(args, RegionArgs):
        from programs.region import IotRegion as Kind
    elif isinstance(args, DnsArgs):
        from programs.dns import GlobalDns as Kind  # type: ignore[assignment]
    else:
        from programs.replication import CrossRegionReplication as Kind  # type: ignore[assignment]
    resource = Kind(component_name(args), args)  # type: ignore[arg-type]
    for key, value in resource.exports().items():
        pulumi.export(key, value)
    return resource


def run() -> None:
    """The Pulumi program: reads `iot-platform:*` config of the current stack."""
    build(decode(pulumi.Config(contract.NAMESPACE).get))
