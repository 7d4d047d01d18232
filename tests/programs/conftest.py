"""Tier 1: the programs evaluated under Pulumi mocks through the public `programs.mocks.evaluate`.

Evaluations are cached per session (each takes tens of milliseconds, but many tests read the same
one); every test only reads them.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from programs.contract import (
    DnsArgs,
    LakeRef,
    RegionArgs,
    RegionEndpoint,
    ReplicationArgs,
    Sizing,
    ThingGroup,
)
from programs.mocks import Evaluation, PlannedResource, ats_endpoint, evaluate

ENV = "dev"
DOMAIN = "iot.example.com"
ZONE = "example.com"
PRIMARY = "eu-west-1"
SECONDARY = "eu-central-1"
THIRD = "eu-north-1"
RESIDENCY = (PRIMARY, SECONDARY, THIRD)


def region_args(region: str = PRIMARY, *, owner: bool = True, sizing: Sizing | None = None,
                env: str = ENV) -> RegionArgs:
    return RegionArgs(
        env=env, region=region, domain=DOMAIN, hosted_zone=ZONE, manage_validation_record=owner,
        sizing=sizing or Sizing(),
        thing_types=("thermostat", "energy-meter"),
        thing_groups=(ThingGroup("buildings"), ThingGroup("building-hq", "buildings")),
    )


def lake(region: str) -> LakeRef:
    name = f"iot-dev-lake-{region}-20240101000000000000000001"
    return LakeRef(region, name, f"arn:aws:s3:::{name}")


def replication_args(*secondaries: str, residency: tuple[str, ...] = RESIDENCY) -> ReplicationArgs:
    return ReplicationArgs(env=ENV, primary=lake(PRIMARY), secondaries=tuple(lake(r) for r in secondaries),
                           residency=residency)


def dns_args(routing: str, *regions: str) -> DnsArgs:
    return DnsArgs(env=ENV, domain=DOMAIN, hosted_zone=ZONE, routing=routing,
                   targets=tuple(RegionEndpoint(r, ats_endpoint(r)) for r in regions))


@cache
def region_eval(region: str = PRIMARY, owner: bool = True) -> Evaluation:
    return evaluate(region_args(region, owner=owner), stack=f"{ENV}-region-{region}")


@cache
def dns_eval(routing: str, regions: tuple[str, ...]) -> Evaluation:
    return evaluate(dns_args(routing, *regions), stack=f"{ENV}-dns")


@cache
def replication_eval(secondaries: tuple[str, ...] = (SECONDARY,)) -> Evaluation:
    return evaluate(replication_args(*secondaries), stack=f"{ENV}-replication")


def policy_of(resource: PlannedResource, key: str = "policy") -> dict[str, Any]:
    """A JSON policy document input, parsed."""
    return json.loads(resource.inputs[key])


def policy_attached_to(ev: Evaluation, role_name: str) -> dict[str, Any]:
    """The inline policy document of one role (exactly one RolePolicy must depend on it)."""
    (attached,) = [p for p in ev.of_type("aws:iam/rolePolicy:RolePolicy") if role_name in p.depends_on]
    return policy_of(attached)


def strings_in(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string leaf of an input tree, with its dotted path; JSON documents are opened too."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in strings_in(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in strings_in(v, f"{path}[{i}]")]
    return [(path, value)] if isinstance(value, str) else []


@pytest.fixture(scope="session")
def primary() -> Evaluation:
    return region_eval(PRIMARY, True)


@pytest.fixture(scope="session")
def secondary() -> Evaluation:
    return region_eval(SECONDARY, False)


@pytest.fixture(scope="session")
def replication() -> Evaluation:
    return replication_eval((SECONDARY, THIRD))


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated V2 classes when its s3 module is imported; the
    # programs use none of them (the inventories below prove it).
    config.addinivalue_line("filterwarnings", r"ignore:.*V2 has been deprecated:DeprecationWarning")
