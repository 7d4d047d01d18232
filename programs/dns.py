"""The shared DNS stack (`E-dns`): the custom domain as CNAME(s) to regional IoT endpoints.

IoT endpoints are not Route 53 alias targets, so every record is a CNAME with a TTL; failover and
latency records carry a `set_identifier` and an explicit health check.

Route 53 allows one PRIMARY and one SECONDARY failover record per name and type, so a failover
never flips roles record by record (refused whichever record goes first). Records are named by
role instead: `<name>-record-primary` (set identifier `primary`) and `<name>-record-secondary`; on
failover their endpoint and health check move, and each change is one valid UPSERT. Health checks
stay named by region. Latency records are one per region (`<name>-record-<region>`, set identifier
the region): Route 53 allows one latency record per Region.

The records of the earlier layout (`<name>-record-<region>`, set identifier the region) are
aliases of the role-named ones, so the first update after an upgrade changes each record's set
identifier in place: one [DELETE old, CREATE new] batch per record, never a moment without an
answer. A `single` record is `<name>-record-primary` too, so promotion changes it in place
(simple -> routed in one batch) and the other records wait for it.

Each routed region has a TCP check of its ATS endpoint and a CLOUDWATCH_METRIC check of its MQTT
canary's alarm (`contract.CanaryNames`, made by the region stack, programs/canary.py); with
`failover_control: dns` the records use a CALCULATED check (`<name>-mqtt-gate-<region>`) healthy
only when both are (docs/architecture.md, "MQTT-level health").

`failover_control: arc` adds Route 53 Application Recovery Controller: a cluster, a control panel,
one routing control per region, a safety rule (at least one routing control On), and per region a
RECOVERY_CONTROL health check combined with the endpoint's TCP check and the canary check in a
CALCULATED check that is healthy only when all three are. The records use the CALCULATED checks, so moving traffic is a
routing-control change through the cluster's data plane: the records never change on failover.
New routing controls start Off: a region takes traffic only once the orchestrator turns its
control On (the promotion's DNS step).

Removing records happens last in a Pulumi update, so going back (fewer regions, or `single`) is done
by the orchestrator in two applies: first the leaving records go, then the mode changes.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from programs.contract import DNS_OUTPUTS, CanaryNames, DnsArgs

TYPE = "iotplatform:dns:GlobalDns"
ROUTING_MODES = ("single", "failover", "latency")
FAILOVER_CONTROLS = ("dns", "arc")
ROLES = ("primary", "secondary")
HEALTH_CHECK_PORT = 443
FAILURE_THRESHOLD = 3
REQUEST_INTERVAL = 30
SAFETY_WAIT_MS = 5000  # ARC refuses changes to the rule's controls for this long after each change
SAFETY_THRESHOLD = 1  # at least one region's routing control On


def check_targets(args: DnsArgs) -> None:
    """Refuse a target list that does not fit the routing mode (clear message, nothing created)."""
    if args.routing not in ROUTING_MODES:
        raise ValueError(f"DNS routing {args.routing!r} is not one of {', '.join(ROUTING_MODES)}")
    if args.failover_control not in FAILOVER_CONTROLS:
        raise ValueError(f"failover control {args.failover_control!r} is not one of {', '.join(FAILOVER_CONTROLS)}")
    domain, zone = args.domain.rstrip(".").lower(), args.hosted_zone.rstrip(".").lower()
    if domain != zone and not domain.endswith("." + zone):  # Route 53: "not permitted in zone"
        raise ValueError(f"DNS domain {args.domain!r} is not inside hosted zone {args.hosted_zone!r}")
    if domain == zone:  # Route 53 allows no CNAME at a zone apex, and every record here is a CNAME
        raise ValueError(f"DNS domain {args.domain!r} is the apex of hosted zone {args.hosted_zone!r}: "
                         "no CNAME may sit there")
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
    failover_control: Output[str]
    routing_controls: Output[dict[str, str]]
    cluster_endpoints: Output[list[dict[str, str]]]
    control_panel_arn: Output[str]
    safety_rule: Output[dict[str, int]]

    def __init__(self, name: str, args: DnsArgs, opts: ResourceOptions | None = None) -> None:
        check_targets(args)
        super().__init__(TYPE, name, None, opts)
        zone = aws.route53.get_zone_output(name=args.hosted_zone, private_zone=False,
                                           opts=pulumi.InvokeOptions(parent=self))
        routed = args.routing != "single"
        health: dict[str, Output[str]] = {}
        controls: dict[str, Output[str]] = {}
        endpoints: Output[Any] = Output.from_input([])
        panel_arn: Output[str] = Output.from_input("")
        if routed:
            tcp = {t.region: self._tcp_check(name, args, t.region, t.endpoint) for t in args.targets}
            mqtt = {t.region: self._canary_check(name, args, t.region) for t in args.targets}
            if args.failover_control == "arc":
                health, controls, endpoints, panel_arn = self._arc(name, args, tcp, mqtt)
            else:
                health = {region: self._both(name, args, region, tcp[region], mqtt[region]).id for region in tcp}

        records: list[aws.route53.Record] = []
        summary: list[dict[str, Any]] = []
        for index, target in enumerate(args.targets):
            extra: dict[str, Any] = {}
            set_id: str | None
            if args.routing == "latency":
                logical, set_id = f"{name}-record-{target.region}", target.region
                aliases = [pulumi.Alias(name=f"{name}-record-primary")] if index == 0 else []
                extra["latency_routing_policies"] = [{"region": target.region}]
            else:
                role = ROLES[index]
                logical, set_id = f"{name}-record-{role}", role if routed else None
                # the layout before role names: the same record, its set identifier was the region
                aliases = [pulumi.Alias(name=f"{name}-record-{target.region}")]
                if routed:
                    extra["failover_routing_policies"] = [{"type": role.upper()}]
            if routed:
                extra.update(set_identifier=set_id, health_check_id=health[target.region])
            # Route 53 refuses a routed record beside a simple one of the same name: the other
            # records wait for the first record, whose update (simple -> routed) the provider makes
            # in one change batch.
            depends = [records[0]] if records else []
            records.append(aws.route53.Record(
                logical, zone_id=zone.zone_id, name=args.domain, type="CNAME", ttl=args.ttl,
                records=[target.endpoint],
                opts=ResourceOptions(parent=self, depends_on=depends, aliases=aliases), **extra))
            summary.append({"setIdentifier": set_id, "region": target.region, "endpoint": target.endpoint})

        self.fqdn = records[0].fqdn
        self.routing = Output.from_input(args.routing)
        self.records = Output.from_input(summary)
        self.health_check_ids = Output.all(**health) if health else Output.from_input({})
        self.failover_control = Output.from_input(args.failover_control)
        self.routing_controls = Output.all(**controls) if controls else Output.from_input({})
        self.cluster_endpoints = endpoints
        self.control_panel_arn = panel_arn
        # what the orchestrator needs to wait out the rule's wait period (and to tell a real
        # violation from it) without calling ARC's control plane
        self.safety_rule = Output.from_input(
            {"threshold": SAFETY_THRESHOLD, "waitPeriodMs": SAFETY_WAIT_MS} if controls else {})
        self.register_outputs(self.exports())

    def _tcp_check(self, name: str, args: DnsArgs, region: str, endpoint: str) -> aws.route53.HealthCheck:
        # A TCP check on 443 of the regional ATS endpoint: an HTTPS check cannot pass, because
        # IoT's data endpoint demands a client certificate. This proves the endpoint accepts
        # connections, not that devices can publish: the records use it only combined with the
        # canary's CLOUDWATCH_METRIC check (`_both`, or the ARC gate).
        return aws.route53.HealthCheck(
            f"{name}-health-{region}", type="TCP", fqdn=endpoint, port=HEALTH_CHECK_PORT,
            failure_threshold=FAILURE_THRESHOLD, request_interval=REQUEST_INTERVAL,
            tags=self._tags(args, region), opts=ResourceOptions(parent=self))

    def _canary_check(self, name: str, args: DnsArgs, region: str) -> aws.route53.HealthCheck:
        # The region's MQTT canary alarm (programs/canary.py), named from (env, region) by the
        # contract: healthy while the alarm is OK; ALARM and INSUFFICIENT_DATA (a new or silent
        # canary) are unhealthy, so a region never takes traffic on an MQTT round trip not yet seen.
        return aws.route53.HealthCheck(
            f"{name}-canary-check-{region}", type="CLOUDWATCH_METRIC",
            cloudwatch_alarm_name=CanaryNames.of(args.env, region).alarm, cloudwatch_alarm_region=region,
            insufficient_data_health_status="Unhealthy", tags=self._tags(args, region),
            opts=ResourceOptions(parent=self))

    def _both(self, name: str, args: DnsArgs, region: str, tcp: aws.route53.HealthCheck,
              mqtt: aws.route53.HealthCheck) -> aws.route53.HealthCheck:
        # What the records use: healthy only while the port answers (Route 53's checkers, every 30 s,
        # from outside AWS's network) and the MQTT round trip succeeds (the canary's alarm, inside).
        return aws.route53.HealthCheck(
            f"{name}-mqtt-gate-{region}", type="CALCULATED", child_healthchecks=[tcp.id, mqtt.id],
            child_health_threshold=2, tags=self._tags(args, region), opts=ResourceOptions(parent=self))

    @staticmethod
    def _tags(args: DnsArgs, region: str) -> dict[str, str]:
        return {"Name": f"iot-{args.env}-{region}", "Environment": args.env, "ManagedBy": "orchestrate"}

    def _arc(self, name: str, args: DnsArgs, tcp: dict[str, aws.route53.HealthCheck],
             mqtt: dict[str, aws.route53.HealthCheck]) -> tuple[
            dict[str, Output[str]], dict[str, Output[str]], Output[Any], Output[str]]:
        """ARC routing controls gating each region's records (see the module docstring)."""
        child = ResourceOptions(parent=self)
        arc = aws.route53recoverycontrol
        cluster = arc.Cluster(f"{name}-arc-cluster", name=f"iot-{args.env}", opts=child)
        panel = arc.ControlPanel(f"{name}-arc-panel", name=f"iot-{args.env}", cluster_arn=cluster.arn, opts=child)
        controls = {
            region: arc.RoutingControl(f"{name}-control-{region}", name=f"iot-{args.env}-{region}",
                                       cluster_arn=cluster.arn, control_panel_arn=panel.arn, opts=child)
            for region in tcp
        }
        arc.SafetyRule(
            f"{name}-arc-one-on", name=f"iot-{args.env}-at-least-one-region-on", control_panel_arn=panel.arn,
            asserted_controls=[c.arn for c in controls.values()], wait_period_ms=SAFETY_WAIT_MS,
            rule_config={"inverted": False, "threshold": SAFETY_THRESHOLD, "type": "ATLEAST"}, opts=child)
        gates: dict[str, Output[str]] = {}
        for region, check in tcp.items():
            switch = aws.route53.HealthCheck(
                f"{name}-control-check-{region}", type="RECOVERY_CONTROL",
                routing_control_arn=controls[region].arn, tags=self._tags(args, region), opts=child)
            # Route 53 nests no CALCULATED check in another: the gate combines all three itself
            gate = aws.route53.HealthCheck(
                f"{name}-gate-{region}", type="CALCULATED", child_healthchecks=[check.id, switch.id, mqtt[region].id],
                child_health_threshold=3, tags=self._tags(args, region), opts=child)
            gates[region] = gate.id
        return gates, {r: c.arn for r, c in controls.items()}, cluster.cluster_endpoints.apply(
            lambda eps: [{"region": e.region, "endpoint": e.endpoint} if not isinstance(e, dict)
                         else {"region": e.get("region"), "endpoint": e.get("endpoint")} for e in eps or []]), panel.arn

    def exports(self) -> dict[str, Output[Any]]:
        values = [self.fqdn, self.routing, self.records, self.health_check_ids, self.failover_control,
                  self.routing_controls, self.cluster_endpoints, self.control_panel_arn, self.safety_rule]
        return dict(zip(DNS_OUTPUTS, values, strict=True))
