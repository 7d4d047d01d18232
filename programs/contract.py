"""The contract between the orchestrator and the programs: typed, frozen stack arguments.

The orchestrator builds these from the topology (and wired upstream outputs), encodes them as
stack config (`to_config`), and the programs decode the same config (`from_config`), so the two
sides cannot drift. Pure Python: no Pulumi import, cheap for the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

NAMESPACE = "iot-platform"
PROJECT = "iot-platform"

Getter = Callable[[str], "str | None"]


class Component(str, Enum):
    REGION = "region"
    DNS = "dns"
    REPLICATION = "replication"


# Output names each region stack exports; the orchestrator validates them before wiring.
REGION_OUTPUTS = (
    "region",
    "iotEndpoint",
    "domainConfigurationName",
    "domainConfigurationArn",
    "certificateArn",
    "streamName",
    "streamArn",
    "dataLakeBucketName",
    "dataLakeBucketArn",
    "devicePolicyName",
)
# Exported only by the home region's stack when the topology names a backup region: the vault, and
# the key that signs backup manifests (`awskms:<key ARN>`, the spec `orchestrator.registry.signing` reads).
BACKUP_OUTPUT = "backupBucketName"
SIGNING_KEY_OUTPUT = "backupSigningKey"
DNS_OUTPUTS = ("fqdn", "routing", "records", "healthCheckIds", "failoverControl", "routingControls",
               "clusterEndpoints", "controlPanelArn", "safetyRule")
REPLICATION_OUTPUTS = ("replicationRoleArn", "registryTableName", "targets")
# Names both sides read (here, not in the programs that declare them, so the readiness rules and the
# scheduled readiness function import no Pulumi): the registry event types the region stacks turn on,
# and the replication stack's topic rules.
REGISTRY_EVENTS = ("THING", "THING_GROUP", "THING_TYPE", "THING_GROUP_MEMBERSHIP",
                   "THING_GROUP_HIERARCHY", "THING_TYPE_ASSOCIATION")
RULE_DESCRIPTIONS = {"registry-events": "Registry events", "shadow-classic": "Classic shadow updates",
                     "shadow-named": "Named shadow updates"}


def rule_name(env: str, kind: str, region: str) -> str:
    """A replication topic rule's name (rule names allow letters, digits and underscores only)."""
    return f"iot_{env}_{kind}_{region}".replace("-", "_")


def _require(get: Getter, key: str) -> str:
    value = get(key)
    if value is None or value == "":
        raise ValueError(f"missing stack config {NAMESPACE}:{key}")
    return value


def _json(get: Getter, key: str) -> Any:
    return json.loads(_require(get, key))


@dataclass(frozen=True)
class Sizing:
    kinesis_mode: str = "ON_DEMAND"
    kinesis_shards: int = 1
    retention_hours: int = 24
    lake_transition_days: int = 30
    lake_expiration_days: int = 0


@dataclass(frozen=True)
class ThingGroup:
    name: str
    parent: str | None = None


@dataclass(frozen=True)
class IamRoleSettings:
    """Set on every IAM role a program creates (the topology's `iam:`)."""

    path: str = "/"
    permissions_boundary: str = ""

    def to_config(self) -> dict[str, str]:
        if self == IamRoleSettings():
            return {}
        return {"iam": json.dumps({"path": self.path, "permissionsBoundary": self.permissions_boundary},
                                  sort_keys=True)}

    @property
    def boundary(self) -> str | None:
        """`permissions_boundary` of `aws.iam.Role` (None: no boundary)."""
        return self.permissions_boundary or None

    @classmethod
    def from_config(cls, get: Getter) -> IamRoleSettings:
        raw = get("iam")
        if not raw:
            return cls()
        doc = json.loads(raw)
        return cls(path=doc.get("path") or "/", permissions_boundary=doc.get("permissionsBoundary") or "")


@dataclass(frozen=True)
class RegionArgs:
    """Arguments of one region stack (`E-region-<region>`); same program for every region."""

    env: str
    region: str
    domain: str
    hosted_zone: str
    manage_validation_record: bool
    sizing: Sizing = field(default_factory=Sizing)
    thing_types: tuple[str, ...] = ()
    thing_groups: tuple[ThingGroup, ...] = ()
    backup_region: str = ""  # set for the home region's stack only: it keeps the backup vault
    iam: IamRoleSettings = field(default_factory=IamRoleSettings)
    backup_role_arn: str = ""  # the role to assume for the vault's account (topology `accounts.backups`)
    # the role to assume for the hosted zone's account (topology `accounts.dns`) when it is not this
    # region's: the ACM validation record (manage_validation_record) is written there
    dns_role_arn: str = ""

    def to_config(self) -> dict[str, str]:
        return {
            **({"backupRegion": self.backup_region} if self.backup_region else {}),
            **({"backupRoleArn": self.backup_role_arn} if self.backup_role_arn else {}),
            **({"dnsRoleArn": self.dns_role_arn} if self.dns_role_arn else {}),
            **self.iam.to_config(),
            "component": Component.REGION.value,
            "env": self.env,
            "region": self.region,
            "domain": self.domain,
            "hostedZone": self.hosted_zone,
            "manageValidationRecord": "true" if self.manage_validation_record else "false",
            "sizing": json.dumps(self.sizing.__dict__, sort_keys=True),
            "registry": json.dumps({
                "thingTypes": list(self.thing_types),
                "thingGroups": [{"name": g.name, "parent": g.parent} for g in self.thing_groups],
            }, sort_keys=True),
        }

    @classmethod
    def from_config(cls, get: Getter) -> RegionArgs:
        registry = _json(get, "registry")
        return cls(
            env=_require(get, "env"),
            region=_require(get, "region"),
            domain=_require(get, "domain"),
            hosted_zone=_require(get, "hostedZone"),
            manage_validation_record=_require(get, "manageValidationRecord") == "true",
            sizing=Sizing(**_json(get, "sizing")),
            thing_types=tuple(registry.get("thingTypes", [])),
            thing_groups=tuple(ThingGroup(g["name"], g.get("parent")) for g in registry.get("thingGroups", [])),
            backup_region=get("backupRegion") or "",
            iam=IamRoleSettings.from_config(get),
            backup_role_arn=get("backupRoleArn") or "",
            dns_role_arn=get("dnsRoleArn") or "",
        )


@dataclass(frozen=True)
class RegionEndpoint:
    region: str
    endpoint: str  # the region's iot:Data-ATS hostname


@dataclass(frozen=True)
class DnsArgs:
    """Arguments of the shared DNS stack (`E-dns`).

    `targets` are the regions DNS routes to, in routing order: for `single` only the primary; for
    `failover` the primary then the failover target; for `latency` every member region.
    """

    env: str
    domain: str
    hosted_zone: str
    routing: str  # single | failover | latency
    targets: tuple[RegionEndpoint, ...]
    ttl: int = 60
    failover_control: str = "dns"  # dns | arc (Route 53 ARC routing controls)

    def to_config(self) -> dict[str, str]:
        return {
            "component": Component.DNS.value,
            "env": self.env,
            "domain": self.domain,
            "hostedZone": self.hosted_zone,
            "routing": self.routing,
            "ttl": str(self.ttl),
            "failoverControl": self.failover_control,
            "targets": json.dumps([{"region": t.region, "endpoint": t.endpoint} for t in self.targets]),
        }

    @classmethod
    def from_config(cls, get: Getter) -> DnsArgs:
        return cls(
            env=_require(get, "env"),
            domain=_require(get, "domain"),
            hosted_zone=_require(get, "hostedZone"),
            routing=_require(get, "routing"),
            ttl=int(get("ttl") or 60),
            failover_control=get("failoverControl") or "dns",
            targets=tuple(RegionEndpoint(t["region"], t["endpoint"]) for t in _json(get, "targets")),
        )


@dataclass(frozen=True)
class LakeRef:
    region: str
    bucket_name: str
    bucket_arn: str


@dataclass(frozen=True)
class ReplicationArgs:
    """Arguments of the cross-region stack (`E-replication`), present with two or more regions."""

    env: str
    primary: LakeRef
    secondaries: tuple[LakeRef, ...]
    residency: tuple[str, ...]
    sync_command: str = "orchestrate"  # executable the registry-sync command runs
    home_region: str = ""  # home of the registry-events table; "" means the primary
    routing: str = "single"  # single | failover | latency: where devices (and so changes) arrive
    iam: IamRoleSettings = field(default_factory=IamRoleSettings)
    # The scheduled readiness function's configuration (`orchestrator.readiness.deploy`, JSON; the
    # function's READINESS_CONFIG); "" declares no readiness function.
    readiness: str = ""
    # The topology's `registry.retained_topics`: retained messages under these prefixes are carried
    # by continuous replication too (a topic rule per prefix; the functions may republish there)
    retained_topics: tuple[str, ...] = ()
    # The topology's `registry.command_outbox`: the command outbox's global table and, in every member
    # region, its replay function (docs/adr/0002-command-outbox.md)
    command_outbox: bool = False

    def to_config(self) -> dict[str, str]:
        def lake(x: LakeRef) -> dict[str, str]:
            return {"region": x.region, "bucketName": x.bucket_name, "bucketArn": x.bucket_arn}

        return {
            "component": Component.REPLICATION.value,
            "env": self.env,
            "primary": json.dumps(lake(self.primary)),
            "secondaries": json.dumps([lake(s) for s in self.secondaries]),
            "residency": json.dumps(list(self.residency)),
            "syncCommand": self.sync_command,
            "routing": self.routing,
            **({"homeRegion": self.home_region} if self.home_region else {}),
            **({"readiness": self.readiness} if self.readiness else {}),
            **({"retainedTopics": json.dumps(list(self.retained_topics))} if self.retained_topics else {}),
            **({"commandOutbox": "true"} if self.command_outbox else {}),
            **self.iam.to_config(),
        }

    @classmethod
    def from_config(cls, get: Getter) -> ReplicationArgs:
        def lake(d: Mapping[str, str]) -> LakeRef:
            return LakeRef(d["region"], d["bucketName"], d["bucketArn"])

        return cls(
            env=_require(get, "env"),
            primary=lake(_json(get, "primary")),
            secondaries=tuple(lake(s) for s in _json(get, "secondaries")),
            residency=tuple(_json(get, "residency")),
            sync_command=get("syncCommand") or "orchestrate",
            home_region=get("homeRegion") or "",
            routing=get("routing") or "single",
            iam=IamRoleSettings.from_config(get),
            readiness=get("readiness") or "",
            retained_topics=tuple(str(p) for p in json.loads(get("retainedTopics") or "[]")),
            command_outbox=(get("commandOutbox") or "") == "true",
        )

    @property
    def routed_regions(self) -> tuple[str, ...]:
        """Where devices connect, so where registry and shadow changes happen (DNS's targets)."""
        if self.routing == "latency":
            return self.members
        if self.routing == "failover" and self.secondaries:
            return (self.primary.region, self.secondaries[0].region)
        return (self.primary.region,)

    @property
    def function_regions(self) -> tuple[str, ...]:
        """Where the replication function applies changes: each secondary; every member in latency mode."""
        return function_regions(self.routing, self.primary.region, tuple(s.region for s in self.secondaries))

    def source_regions(self, region: str) -> tuple[str, ...]:
        """The regions whose changes the function in `region` applies (and reads certificates from)."""
        return tuple(r for r in dict.fromkeys((self.primary.region, *self.routed_regions)) if r != region)

    @property
    def readiness_region(self) -> str:
        """Where the scheduled readiness function runs: the first secondary, never the primary (it
        must still report while the primary is down)."""
        return self.secondaries[0].region

    @property
    def table_region(self) -> str:
        return self.home_region or self.primary.region

    @property
    def members(self) -> tuple[str, ...]:
        return (self.primary.region, *(s.region for s in self.secondaries))


def function_regions(routing: str, primary: str, secondaries: tuple[str, ...]) -> tuple[str, ...]:
    """The regions with a replication function (also what `status` and `registry replay` look at)."""
    if not secondaries:
        return ()
    return (primary, *secondaries) if routing == "latency" else secondaries


@dataclass(frozen=True)
class ReplicationNames:
    """Physical names of one region's replication function and what belongs to it (also read by
    `orchestrate status` and `registry replay`)."""

    function: str
    dead_letter_queue: str
    applied_table: str
    reconcile_state_machine: str = ""  # the daily reconciliation (secondaries only)
    reconcile_schedule: str = ""

    @classmethod
    def of(cls, env: str, region: str) -> ReplicationNames:
        return cls(function=f"iot-{env}-replicator-{region}",
                   dead_letter_queue=f"iot-{env}-replication-dlq-{region}",
                   applied_table=f"iot-{env}-replication-applied-{region}",
                   reconcile_state_machine=f"iot-{env}-reconcile-{region}",
                   reconcile_schedule=f"iot-{env}-reconcile-{region}")


@dataclass(frozen=True)
class OutboxNames:
    """Physical names of the command outbox (docs/adr/0002-command-outbox.md): one global table per
    environment, one replay function and its two topic rules per member region."""

    table: str
    function: str
    connected_rule: str
    ack_rule: str
    errors_alarm: str  # the function's Lambda `Errors` metric, in its region

    @classmethod
    def of(cls, env: str, region: str) -> OutboxNames:
        function = f"iot-{env}-command-outbox-{region}"
        return cls(table=f"iot-{env}-command-outbox", function=function,
                   connected_rule=rule_name(env, "outbox_connected", region),
                   ack_rule=rule_name(env, "outbox_ack", region), errors_alarm=f"{function}-errors")


@dataclass(frozen=True)
class ReadinessNames:
    """Physical names of the scheduled readiness check (one per environment)."""

    function: str
    schedule: str
    alarm: str

    @classmethod
    def of(cls, env: str) -> ReadinessNames:
        return cls(function=f"iot-{env}-readiness", schedule=f"iot-{env}-readiness-every-5-minutes",
                   alarm=f"iot-{env}-not-ready")


@dataclass(frozen=True)
class CanaryNames:
    """Physical names of one region's MQTT canary (programs/canary.py). The DNS stack derives the
    alarm its CLOUDWATCH_METRIC health check watches from (env, region) alone, so no output crosses
    stacks for it; the region stack, which DNS depends on, creates the alarm first."""

    thing: str  # also the MQTT client id and the IoT policy's name
    function: str
    alarm: str
    topic_prefix: str  # the canary publishes and subscribes under `<prefix>/...` only

    @classmethod
    def of(cls, env: str, region: str) -> CanaryNames:
        base = f"iot-{env}-canary-{region}"
        return cls(thing=base, function=base, alarm=f"{base}-mqtt", topic_prefix=f"canary/{region}")


def component_of(get: Getter) -> Component:
    return Component(_require(get, "component"))
