"""The shared DNS stack (`E-dns`): the custom domain as CNAME(s) to regional IoT endpoints.

IoT endpoints are not Route 53 alias targets, so every record is a CNAME with a TTL; failover and
latency records carry a `set_identifier` (the region) and an explicit health check.

Record logical names are `<name>-record-<region>` in every routing mode, so promoting `single` to
`failover`/`latency` updates the primary's record in place (Route 53 replaces the record set in one
change batch) instead of creating a second, conflicting CNAME for the same name; the other records
depend on the primary's, so they are created only after it has become a routed record. Removing
records happens last in a Pulumi update, so going back (fewer regions, or `single`) is done by the
orchestrator in two applies: first the leaving records go, then the mode changes.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from programs.contract import DNS_OUTPUTS, DnsArgs

TYPE = "iotplatform:dns:GlobalDns"
ROUTING_MODES = ("single", "failover", "latency")
HEALTH_CHECK_PORT = 443
FAILURE_THRESHOLD = 3
REQUEST_INTERVAL = 30


def check_targets(args: DnsArgs) -> None:
    """Refuse a target list that does not fit the routing mode (clear message, nothing created)."""
    if args.routing not in ROUTING_MODES:
        raise ValueError(f"DNS routing {args.routing!r} is not one of {', '.join(ROUTING_MODES)}")
    regions = [t.region for t in args.targets]
    if len(set(regions)) != len(regions):
        raise ValueError(f"DNS targets list a region twice: {regions}")
    # failover with the primary alone is a valid Route 53 state: the orchestrator passes through it
    # when a secondary leaves (records are removed before the primary's record changes mode)
    expected = {"single": (1, 1), "failover": (1, 2), "latency": (1, None)}[args.routing]
    low, high = expected
    if len(regions) < low or (high is not None and len(regions) > high):
        wanted = f"exactly {low}" if low == high else f"at least {low}"
        raise ValueError(f"{args.routing} routing needs {wanted} target region(s), got {regions}")
    for target in args.targets:
        if not target.endpoint:
            raise ValueError(f"DNS target {target.region} has no endpoint")


class GlobalDns(pulumi.ComponentResource):
    fqdn: Output[str]
    routing: Output[str]
    records: Output[list[dict[str, Any]]]
    health_check_ids: Output[dict[str, str]]

    def __init__(self, name: str, args: DnsArgs, opts: ResourceOptions | None = None) -> None:
        check_targets(args)
        super().__init__(TYPE, name, None, opts)
        child = ResourceOptions(parent=self)
        zone = aws.route53.get_zone_output(name=args.hosted_zone, private_zone=False,
                                           opts=pulumi.InvokeOptions(parent=self))
        records: list[aws.route53.Record] = []
        health: dict[str, Output[str]] = {}
        summary: list[dict[str, Any]] = []
        for index, target in enumerate(args.targets):
            extra: dict[str, Any] = {}
            if args.routing != "single":
                # A TCP check on 443 of the regional ATS endpoint: an HTTPS check cannot pass,
                # because IoT's data endpoint demands a client certificate. This proves the
                # endpoint accepts connections, not that devices can publish; the evolution is a
                # CALCULATED / CloudWatch-alarm check fed by a canary doing a real MQTT round trip.
                check = aws.route53.HealthCheck(
                    f"{name}-health-{target.region}", type="TCP", fqdn=target.endpoint,
                    port=HEALTH_CHECK_PORT, failure_threshold=FAILURE_THRESHOLD,
                    request_interval=REQUEST_INTERVAL,
                    tags={"Name": f"iot-{args.env}-{target.region}", "Environment": args.env,
                          "ManagedBy": "orchestrate"},
                    opts=child)
                health[target.region] = check.id
                extra = {"set_identifier": target.region, "health_check_id": check.id}
                if args.routing == "failover":
                    role = "PRIMARY" if index == 0 else "SECONDARY"
                    extra["failover_routing_policies"] = [{"type": role}]
                else:
                    extra["latency_routing_policies"] = [{"region": target.region}]
            # Route 53 refuses a routed record beside a simple one of the same name: the other
            # records wait for the primary's record, whose update (simple -> routed) the provider
            # makes in one change batch.
            order = child if not records else ResourceOptions(parent=self, depends_on=[records[0]])
            records.append(aws.route53.Record(
                f"{name}-record-{target.region}", zone_id=zone.zone_id, name=args.domain,
                type="CNAME", ttl=args.ttl, records=[target.endpoint], opts=order, **extra))
            summary.append({
                "setIdentifier": target.region if args.routing != "single" else None,
                "region": target.region,
                "endpoint": target.endpoint,
            })

        self.fqdn = records[0].fqdn
        self.routing = Output.from_input(args.routing)
        self.records = Output.from_input(summary)
        self.health_check_ids = Output.all(**health) if health else Output.from_input({})
        self.register_outputs(self.exports())

    def exports(self) -> dict[str, Output[Any]]:
        values = [self.fqdn, self.routing, self.records, self.health_check_ids]
        return dict(zip(DNS_OUTPUTS, values, strict=True))
