"""Wiring: stack config from the topology plus validated upstream outputs.

A region stack's outputs are checked against a contract (the endpoint must be the ATS hostname of
that region, each ARN an ARN of the right service and region) before they are written into the DNS
and replication stacks' config. A violation stops the run before DNS is touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.types import OutputValue, StackSpec
from orchestrator.errors import ContractViolation
from orchestrator.stacks.graph import (
    StackKind,
    dns_stack,
    dns_targets,
    region_stack,
    replication_stack,
)
from orchestrator.topology import Topology
from programs import contract

PLACEHOLDER_PREFIX = "placeholder:"

_ACCOUNT = r"\d{12}"
_PARTITION = r"aws(?:-cn|-us-gov)?"


@dataclass(frozen=True)
class RegionOutputs:
    """A region stack's outputs once they passed the contract."""

    region: str
    endpoint: str
    domain_configuration_name: str
    domain_configuration_arn: str
    certificate_arn: str
    stream_name: str
    stream_arn: str
    bucket_name: str
    bucket_arn: str
    device_policy_name: str

    @property
    def is_placeholder(self) -> bool:
        return self.endpoint.startswith(PLACEHOLDER_PREFIX)


def endpoint_pattern(region: str) -> re.Pattern[str]:
    suffix = r"amazonaws\.com\.cn" if region.startswith("cn-") else r"amazonaws\.com"
    return re.compile(rf"^[a-z0-9]{{10,20}}-ats\.iot\.{re.escape(region)}\.{suffix}$")


def _arn(service: str, region: str, resource: str) -> re.Pattern[str]:
    return re.compile(rf"^arn:{_PARTITION}:{service}:{re.escape(region)}:{_ACCOUNT}:{resource}$")


def validate_region_outputs(stack: str, region: str, raw: Mapping[str, OutputValue]) -> RegionOutputs:
    """Check a region stack's outputs against the wiring contract; raise `ContractViolation`."""
    missing = [k for k in contract.REGION_OUTPUTS if k not in raw]
    if missing:
        raise ContractViolation(f"{stack}: missing outputs {', '.join(missing)}")

    def text(key: str) -> str:
        value = raw[key].value
        if not isinstance(value, str) or not value:
            raise ContractViolation(f"{stack}: output {key} must be a non-empty string, got {value!r}")
        return value

    checks: dict[str, re.Pattern[str]] = {
        "iotEndpoint": endpoint_pattern(region),
        "domainConfigurationArn": _arn("iot", region, r"domainconfiguration/[\w.-]+(/[\w.-]+)?"),
        "certificateArn": _arn("acm", region, r"certificate/[\w-]+"),
        "streamArn": _arn("kinesis", region, r"stream/[\w.-]+"),
        "dataLakeBucketArn": re.compile(rf"^arn:{_PARTITION}:s3:::[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]$"),
    }
    if text("region") != region:
        raise ContractViolation(f"{stack}: output region is {text('region')!r}, expected {region!r}")
    for key, pattern in checks.items():
        value = text(key)
        if not pattern.match(value):
            raise ContractViolation(
                f"{stack}: output {key}={value!r} violates the wiring contract (expected {pattern.pattern})"
            )
    if not text("dataLakeBucketArn").endswith(":::" + text("dataLakeBucketName")):
        raise ContractViolation(f"{stack}: dataLakeBucketArn does not name bucket {text('dataLakeBucketName')!r}")
    return RegionOutputs(
        region=region,
        endpoint=text("iotEndpoint"),
        domain_configuration_name=text("domainConfigurationName"),
        domain_configuration_arn=text("domainConfigurationArn"),
        certificate_arn=text("certificateArn"),
        stream_name=text("streamName"),
        stream_arn=text("streamArn"),
        bucket_name=text("dataLakeBucketName"),
        bucket_arn=text("dataLakeBucketArn"),
        device_policy_name=text("devicePolicyName"),
    )


def placeholder_outputs(region: str) -> RegionOutputs:
    """Clearly marked stand-ins for a region stack that is not deployed yet: previews only."""
    p = f"{PLACEHOLDER_PREFIX}{region}"
    return RegionOutputs(region, f"{p}:iotEndpoint", p, p, p, p, p, f"{p}:bucket", f"{p}:bucketArn", p)


def _qualify(config: Mapping[str, str]) -> dict[str, str]:
    return {f"{contract.NAMESPACE}:{k}": v for k, v in config.items()}


def region_args(topology: Topology, region: str) -> contract.RegionArgs:
    s = topology.sizing(region)
    return contract.RegionArgs(
        env=topology.env,
        region=region,
        domain=topology.domain,
        hosted_zone=topology.hosted_zone,
        manage_validation_record=(region == topology.home_region),
        sizing=contract.Sizing(
            kinesis_mode=s.kinesis_mode.value,
            kinesis_shards=s.kinesis_shards,
            retention_hours=s.retention_hours,
            lake_transition_days=s.lake_transition_days,
            lake_expiration_days=s.lake_expiration_days,
        ),
        thing_types=topology.registry.thing_types,
        thing_groups=tuple(contract.ThingGroup(g.name, g.parent) for g in topology.registry.thing_groups),
        backup_region=(topology.backup_region or "") if region == topology.home_region else "",
        iam=iam_settings(topology),
        backup_role_arn=(topology.role_for("backups") or "") if region == topology.home_region else "",
        dns_role_arn=_validation_record_role(topology, region),
    )


def _validation_record_role(topology: Topology, region: str) -> str:
    """The role the home region's stack assumes to write the ACM validation record into the hosted
    zone: the `dns` role, when the zone's account is not the region's ("": the stack's own provider)."""
    dns = topology.role_for("dns")
    if region != topology.home_region or not dns or dns == topology.role_for(region):
        return ""
    return dns


def iam_settings(topology: Topology) -> contract.IamRoleSettings:
    return contract.IamRoleSettings(path=topology.iam.path, permissions_boundary=topology.iam.permissions_boundary)


def provider_config(topology: Topology, target: str) -> dict[str, str]:
    """The AWS provider's org settings for a stack: the topology's extra tags as default tags (on
    every taggable resource), the accounts it may touch (the provider refuses to start in any other,
    before any change), and the role to assume when `target` lives in another account."""
    config: dict[str, str] = {}
    if topology.tags:
        config["aws:defaultTags"] = json.dumps({"tags": dict(topology.tags)}, sort_keys=True)
    if topology.allowed_account_ids:
        config["aws:allowedAccountIds"] = json.dumps(list(topology.allowed_account_ids))
    role = topology.role_for(target)
    if role:
        config["aws:assumeRoles"] = json.dumps([{"roleArn": role, "sessionName": f"orchestrate-{topology.env}"}])
    return config


def dns_args(topology: Topology, outputs: Mapping[str, RegionOutputs],
             regions: Sequence[str] | None = None) -> contract.DnsArgs:
    """DNS routes only to `dns_targets` (or the given subset); each must have (validated) outputs."""
    targets = []
    for region in (dns_targets(topology) if regions is None else regions):
        if region not in outputs:
            raise ContractViolation(f"no verified outputs for {region}: DNS never points at a region that is not up")
        targets.append(contract.RegionEndpoint(region, outputs[region].endpoint))
    return contract.DnsArgs(
        env=topology.env, domain=topology.domain, hosted_zone=topology.hosted_zone,
        routing=topology.routing.value, targets=tuple(targets),
        failover_control=topology.failover_control.value,
    )


def replication_args(topology: Topology, outputs: Mapping[str, RegionOutputs],
                     sync_command: str = "orchestrate", readiness: str = "") -> contract.ReplicationArgs:
    """`readiness`: the scheduled readiness function's configuration (`orchestrator.readiness.deploy`)."""
    def lake(region: str) -> contract.LakeRef:
        if region not in outputs:
            raise ContractViolation(f"no verified outputs for {region}: replication needs its data lake")
        o = outputs[region]
        return contract.LakeRef(region, o.bucket_name, o.bucket_arn)

    return contract.ReplicationArgs(
        env=topology.env,
        primary=lake(topology.primary),
        secondaries=tuple(lake(r) for r in topology.secondaries),
        residency=topology.residency,
        sync_command=sync_command,
        home_region=topology.home_region,
        routing=topology.routing.value,
        iam=iam_settings(topology),
        readiness=readiness,
        retained_topics=topology.registry.retained_topics,
        command_outbox=topology.registry.command_outbox,
    )


def region_spec(topology: Topology, region: str) -> StackSpec:
    ref = region_stack(topology, region)
    config = _qualify(region_args(topology, region).to_config())
    config["aws:region"] = region
    config.update(provider_config(topology, region))
    return StackSpec(ref.name, StackKind.REGION.value, region, config)


def dns_spec(topology: Topology, outputs: Mapping[str, RegionOutputs],
             regions: Sequence[str] | None = None) -> StackSpec:
    ref = dns_stack(topology)
    config = _qualify(dns_args(topology, outputs, regions).to_config())
    config["aws:region"] = ref.region
    config.update(provider_config(topology, "dns"))
    return StackSpec(ref.name, StackKind.DNS.value, ref.region, config)


def replication_spec(topology: Topology, outputs: Mapping[str, RegionOutputs],
                     sync_command: str = "orchestrate", readiness: str = "") -> StackSpec:
    ref = replication_stack(topology)
    config = _qualify(replication_args(topology, outputs, sync_command, readiness).to_config())
    config["aws:region"] = ref.region
    # one stack joins every member region: they share one account (the topology refuses others)
    config.update(provider_config(topology, topology.home_region))
    return StackSpec(ref.name, StackKind.REPLICATION.value, ref.region, config)


def uses_placeholders(spec: StackSpec) -> list[str]:
    """Config keys of `spec` that carry placeholder values (which `up` must refuse)."""
    return [k for k, v in spec.config.items() if PLACEHOLDER_PREFIX in v]


def consumed(outputs: Mapping[str, RegionOutputs]) -> dict[str, Any]:
    """The upstream values a downstream stack consumed, as recorded in the run journal."""
    return {r: o.__dict__.copy() for r, o in sorted(outputs.items())}
