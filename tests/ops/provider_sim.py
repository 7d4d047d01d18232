"""What the real pulumi-aws provider would leave in AWS after an `up`, simulated into moto.

The in-memory engine stands in for Pulumi in tier 2 and 3; the lifecycle's verification steps read
AWS itself (Route 53 records, S3 replication rules, IoT domain configurations). This hook, run by
the engine double after each successful `up`, makes those resources in the moto server through the
one resource -> AWS-call mirror (orchestrator/drill/world/mirror.py, the drill's engine uses it too): the
DNS program as evaluated under Pulumi mocks, the region stacks' lake bucket and domain configuration
from their outputs, the replication stack's rules from its config; created, updated, replaced and
deleted as Pulumi and pulumi-aws would (`StackApply`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.aws import AwsContext, client
from orchestrator.drill.world.arc import ArcCluster
from orchestrator.drill.world.mirror import (
    DNS_TYPES,
    RECORD,
    Applied,
    Mirror,
    StackApply,
    region_resources,
    replication_resources,
)
from orchestrator.engine.types import StackSpec
from tests.doubles import region_outputs

NS = "iot-platform:"


class _Overrides(dict):
    """The engine's output overrides, with the simulated DNS exports layered under them."""

    def __init__(self, base: dict[str, Any], dns: dict[str, dict[str, Any]]) -> None:
        super().__init__(base)
        self.dns = dns

    def get(self, key: Any, default: Any = None) -> Any:
        return {**self.dns.get(key, {}), **super().get(key, {})} or default


class ProviderSimulation:
    def __init__(self, ctx: AwsContext, zone: str = "example.com", arc: ArcCluster | None = None) -> None:
        self.ctx = ctx
        self.arc = arc
        self.r53 = client(ctx, "route53", "us-east-1")
        self.zone_id = self.r53.create_hosted_zone(Name=zone, CallerReference="sim")["HostedZone"]["Id"]
        self.corrupt_dns_applies = 0  # the next N DNS applies write wrong records (a broken apply)
        # terraform's wait for INSYNC (15 s, then every 15 s) on a test's time scale: 0.05 s
        self.mirror = Mirror(self._client, arc=arc, time_scale=0.05 / 15)
        self.world = StackApply(self.mirror, zone_id=self.zone_id)
        # what the DNS stack exports, merged into the in-memory engine's outputs (see `attach`)
        self.engine_outputs: dict[str, dict[str, Any]] = {}

    def _client(self, service: str, region: str) -> Any:
        """Route 53 through `self.r53` (a test may swap it for one without retries)."""
        return self.r53 if service == "route53" else client(self.ctx, service, region)

    @property
    def applied(self) -> dict[str, dict[str, Applied]]:
        """stack -> logical name -> what exists."""
        return self.world.state

    @property
    def batches(self) -> list[list[tuple[str, dict[str, Any]]]]:
        return self.mirror.batches

    def attach(self, engine: Any) -> None:
        """Run after each `up` of `engine`, and let the DNS stack export what the program exports."""
        engine.after_up.append(self)
        engine.output_overrides = _Overrides(engine.output_overrides, self.engine_outputs)

    def __call__(self, spec: StackSpec) -> None:
        handler: Callable[[StackSpec], None] = getattr(self, f"_{spec.kind}")
        handler(spec)

    def _region(self, spec: StackSpec) -> None:
        out = region_outputs(spec.region, spec.config[NS + "env"])
        self.world.apply(spec.name, region_resources(spec.region, spec.config[NS + "domain"], out), {},
                         default_region=spec.region)

    def _dns(self, spec: StackSpec) -> None:
        """Apply the DNS program as Pulumi and pulumi-aws would: the program (under mocks) says what
        exists; the mirror makes it (orchestrator/drill/world/mirror.py)."""
        from programs.contract import DnsArgs
        from programs.mocks import PlatformMocks, evaluate

        args = DnsArgs.from_config(lambda key: spec.config.get(NS + key))
        mocks = PlatformMocks()
        evaluation = evaluate(args, stack=spec.name, mocks=mocks)
        corrupt = self.corrupt_dns_applies > 0
        self.corrupt_dns_applies = max(0, self.corrupt_dns_applies - 1)

        def broken(token: str, inputs: dict[str, Any]) -> dict[str, Any]:
            return {**inputs, "records": ["wrong.example.net"]} if corrupt and token == RECORD else inputs

        self.world.apply(spec.name, evaluation.resources, mocks.states, only=DNS_TYPES.__contains__, edit=broken)
        outputs = dict(evaluation.outputs)
        outputs["healthCheckIds"] = {r: self.world.real_ids.get(i, i)
                                     for r, i in (outputs.get("healthCheckIds") or {}).items()}
        if self.arc is not None and outputs.get("routingControls"):
            outputs["clusterEndpoints"] = self.arc.endpoint_list
        self.engine_outputs[spec.name] = outputs

    def _replication(self, spec: StackSpec) -> None:
        self.world.apply(spec.name, replication_resources(spec.config), {})  # as the drill's engine does

    def records(self, domain: str = "iot.example.com") -> list[dict[str, Any]]:
        name = domain + "."
        return [rr for rr in self.r53.list_resource_record_sets(
            HostedZoneId=self.zone_id, StartRecordName=name, StartRecordType="CNAME")["ResourceRecordSets"]
            if rr["Name"] == name and rr["Type"] == "CNAME"]
