"""The environment topology: parsed once, at the edge, into immutable typed objects.

`stacks/<env>.topology.yaml` is the single source of truth for one environment. Everything
downstream sees a `Topology`; nothing else reads the YAML. Commands that change the topology
(promote-secondary, failover, failback) produce a new `Topology` and write it back with `save`,
so every change is a reviewable diff.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestrator.errors import InputRejected


class RoutingMode(str, Enum):
    SINGLE = "single"
    FAILOVER = "failover"
    LATENCY = "latency"


class KinesisMode(str, Enum):
    ON_DEMAND = "ON_DEMAND"
    PROVISIONED = "PROVISIONED"


_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$")
_ENV_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")

_TOP_KEYS = {
    "domain", "hosted_zone", "primary", "secondaries", "routing", "residency",
    "home_region", "backup_region", "registry", "sizing", "quotas",
}
_SIZING_KEYS = {"kinesis_mode", "kinesis_shards", "retention_hours", "lake_transition_days",
                "lake_expiration_days"}
_REGISTRY_KEYS = {"thing_types", "thing_groups"}


@lru_cache(maxsize=1)
def iot_regions() -> frozenset[str]:
    """Regions where AWS IoT Core exists, from the endpoint data botocore ships (no network)."""
    import botocore.session  # deferred: keeps `orchestrate --help` fast

    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("iot", partition_name=partition))
    return frozenset(regions)


@dataclass(frozen=True)
class RegionSizing:
    kinesis_mode: KinesisMode = KinesisMode.ON_DEMAND
    kinesis_shards: int = 1
    retention_hours: int = 24
    lake_transition_days: int = 30
    lake_expiration_days: int = 0  # 0: objects are kept until someone decides otherwise


@dataclass(frozen=True)
class ThingGroupSpec:
    name: str
    parent: str | None = None


@dataclass(frozen=True)
class RegistrySpec:
    thing_types: tuple[str, ...] = ()
    thing_groups: tuple[ThingGroupSpec, ...] = ()


@dataclass(frozen=True)
class Topology:
    env: str
    domain: str
    hosted_zone: str
    primary: str
    secondaries: tuple[str, ...] = ()
    routing: RoutingMode = RoutingMode.SINGLE
    residency: tuple[str, ...] = ()
    # The region that owns the account-wide singletons: the ACM DNS-validation record (the same
    # in every region) and the home of the registry-events table. Stable across failover.
    home_region: str = ""
    backup_region: str | None = None
    registry: RegistrySpec = field(default_factory=RegistrySpec)
    default_sizing: RegionSizing = field(default_factory=RegionSizing)
    sizing_overrides: Mapping[str, RegionSizing] = field(default_factory=dict)
    # AWS API quotas raised above the defaults (calls/s per API; orchestrator/registry/quotas.py)
    quotas: Mapping[str, float] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def regions(self) -> tuple[str, ...]:
        """Every member region, primary first."""
        return (self.primary, *self.secondaries)

    @property
    def multi_region(self) -> bool:
        return len(self.regions) > 1

    def sizing(self, region: str) -> RegionSizing:
        return self.sizing_overrides.get(region, self.default_sizing)

    def role(self, region: str) -> str:
        if region == self.primary:
            return "primary"
        if region in self.secondaries:
            return "secondary"
        return "none"

    # -- changes: each returns a new, validated Topology -----------------------------------
    def with_secondary(self, region: str) -> Topology:
        return _revalidate(replace(self, secondaries=(*self.secondaries, region)))

    def without_secondary(self, region: str) -> Topology:
        rest = tuple(r for r in self.secondaries if r != region)
        routing = self.routing if len(rest) >= 1 else RoutingMode.SINGLE
        return _revalidate(replace(self, secondaries=rest, routing=routing))

    def with_routing(self, routing: RoutingMode) -> Topology:
        return _revalidate(replace(self, routing=routing))

    def with_primary(self, region: str) -> Topology:
        """Swap roles: `region` (a secondary) becomes primary, the old primary a secondary."""
        if region not in self.secondaries:
            raise InputRejected(f"{self.source}: {region} is not a secondary of env {self.env}")
        rest = [self.primary if r == region else r for r in self.secondaries]
        return _revalidate(replace(self, primary=region, secondaries=tuple(rest)))

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "domain": self.domain,
            "hosted_zone": self.hosted_zone,
            "primary": self.primary,
            "secondaries": list(self.secondaries),
            "routing": self.routing.value,
            "residency": list(self.residency),
            "home_region": self.home_region,
        }
        if self.backup_region:
            doc["backup_region"] = self.backup_region
        doc["registry"] = {
            "thing_types": list(self.registry.thing_types),
            "thing_groups": [
                {"name": g.name, **({"parent": g.parent} if g.parent else {})}
                for g in self.registry.thing_groups
            ],
        }
        sizing: dict[str, Any] = {"default": _sizing_doc(self.default_sizing)}
        for region, s in self.sizing_overrides.items():
            sizing[region] = _sizing_doc(s)
        doc["sizing"] = sizing
        if self.quotas:
            doc["quotas"] = dict(self.quotas)
        return doc


def _sizing_doc(s: RegionSizing) -> dict[str, Any]:
    return {
        "kinesis_mode": s.kinesis_mode.value,
        "kinesis_shards": s.kinesis_shards,
        "retention_hours": s.retention_hours,
        "lake_transition_days": s.lake_transition_days,
        "lake_expiration_days": s.lake_expiration_days,
    }


def topology_path(stacks_dir: Path, env: str) -> Path:
    return stacks_dir / f"{env}.topology.yaml"


def load(path: Path, env: str | None = None) -> Topology:
    """Read and validate a topology file. Every problem is an `InputRejected` naming file and field."""
    import yaml  # deferred

    name = str(path)
    env = env or path.name.split(".topology.")[0]
    if not _ENV_RE.match(env):
        raise InputRejected(f"{name}: environment name {env!r} must match {_ENV_RE.pattern}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputRejected(f"{name}: topology file not found",
                            hint="create it or pass --config PATH") from None
    except OSError as exc:
        raise InputRejected(f"{name}: cannot read topology file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputRejected(f"{name}:{where} malformed YAML: {problem}") from None
    return parse(data, env=env, source=name)


def parse(data: Any, *, env: str, source: str = "<memory>") -> Topology:
    v = _Validator(source)
    if not isinstance(data, dict):
        v.fail("", "the topology must be a mapping of keys to values")
    v.no_unknown_keys(data, _TOP_KEYS, "")
    domain = v.domain(data, "domain")
    zone = v.domain(data, "hosted_zone").rstrip(".")
    if not (domain == zone or domain.endswith("." + zone)):
        v.fail("domain", f"{domain!r} is not inside hosted_zone {zone!r}")
    primary = v.region(data.get("primary"), "primary")
    secondaries = v.region_list(data.get("secondaries", []), "secondaries")
    if primary in secondaries:
        v.fail("secondaries", f"the primary {primary} is also listed as a secondary")
    residency = v.region_list(data.get("residency", [primary]), "residency")
    if not residency:
        v.fail("residency", "must list at least the primary region")
    if primary not in residency:
        v.fail("primary", f"{primary} is outside residency {list(residency)}")
    for i, region in enumerate(secondaries):
        if region not in residency:
            v.fail(f"secondaries[{i}]",
                   f"{region} is outside residency {list(residency)}: data may not be copied there")
    routing_raw = data.get("routing", "single")
    try:
        routing = RoutingMode(routing_raw)
    except ValueError:
        v.fail("routing", f"{routing_raw!r} is not one of single, failover, latency")
    if routing is not RoutingMode.SINGLE and not secondaries:
        v.fail("routing", f"{routing.value} routing needs at least two regions (only {primary} is listed)")
    home = v.region(data.get("home_region", primary), "home_region")
    if home not in (primary, *secondaries):
        v.fail("home_region", f"{home} is not a member region")
    backup = data.get("backup_region")
    if backup is not None:
        backup = v.region(backup, "backup_region")
        if backup not in residency:
            v.fail("backup_region", f"{backup} is outside residency {list(residency)}")
    registry = v.registry(data.get("registry", {}) or {})
    default_sizing, overrides = v.sizing(data.get("sizing", {}) or {})
    from orchestrator.registry.quotas import normalize_quotas

    quotas = normalize_quotas(data.get("quotas") or {}, source=f"{source}: quotas")
    return Topology(
        env=env, domain=domain, hosted_zone=zone, primary=primary, secondaries=secondaries,
        routing=routing, residency=residency, home_region=home, backup_region=backup,
        registry=registry, default_sizing=default_sizing, sizing_overrides=overrides, quotas=quotas,
        source=source,
    )


def _revalidate(topology: Topology) -> Topology:
    return parse(topology.to_document(), env=topology.env, source=topology.source)


def save(topology: Topology, path: Path) -> None:
    """Write the topology atomically, in canonical form, with a header for reviewers."""
    import yaml

    header = (
        f"# Topology of environment {topology.env!r}: the single source of truth for its stacks.\n"
        "# Changed by `orchestrate promote-secondary`, `failover` and `failback`; review it in a PR.\n"
    )
    from orchestrator.state import atomic_write_text

    body = yaml.safe_dump(topology.to_document(), sort_keys=False, default_flow_style=False)
    try:
        mode: int | None = path.stat().st_mode & 0o7777  # a reviewed file keeps its mode
    except FileNotFoundError:
        mode = 0o644
    atomic_write_text(path, header + body, mode=mode)


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, fieldname: str, message: str) -> Any:
        where = f"{self.source}: {fieldname}: " if fieldname else f"{self.source}: "
        raise InputRejected(where + message)

    def no_unknown_keys(self, data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                label = f"{prefix}.{key}" if prefix else str(key)
                self.fail(label, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def domain(self, data: Mapping[str, Any], key: str) -> str:
        value = data.get(key)
        if value is None:
            self.fail(key, "is required")
        if not isinstance(value, str) or not _DOMAIN_RE.match(value.rstrip(".").lower()) \
                or value != value.strip():
            self.fail(key, f"{value!r} is not a valid DNS name")
        return str(value).lower()

    def region(self, value: Any, label: str) -> str:
        if value is None:
            self.fail(label, "is required")
        if not isinstance(value, str) or value not in iot_regions():
            self.fail(label, f"{value!r} is not an AWS region where IoT Core is available")
        return value

    def region_list(self, value: Any, label: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(label, "must be a list of regions")
        seen: list[str] = []
        for i, item in enumerate(value):
            region = self.region(item, f"{label}[{i}]")
            if region in seen:
                self.fail(f"{label}[{i}]", f"{region} is listed twice")
            seen.append(region)
        return tuple(seen)

    def name(self, value: Any, label: str) -> str:
        if not isinstance(value, str) or not _NAME_RE.match(value):
            self.fail(label, f"{value!r} is not a valid IoT name ({_NAME_RE.pattern})")
        return value

    def registry(self, data: Any) -> RegistrySpec:
        if not isinstance(data, dict):
            self.fail("registry", "must be a mapping")
        self.no_unknown_keys(data, _REGISTRY_KEYS, "registry")
        types_raw = data.get("thing_types", []) or []
        if not isinstance(types_raw, list):
            self.fail("registry.thing_types", "must be a list of names")
        types = tuple(self.name(t, f"registry.thing_types[{i}]") for i, t in enumerate(types_raw))
        if len(set(types)) != len(types):
            self.fail("registry.thing_types", "lists a name twice")
        groups_raw = data.get("thing_groups", []) or []
        if not isinstance(groups_raw, list):
            self.fail("registry.thing_groups", "must be a list")
        groups: list[ThingGroupSpec] = []
        for i, g in enumerate(groups_raw):
            label = f"registry.thing_groups[{i}]"
            if isinstance(g, str):
                g = {"name": g}
            if not isinstance(g, dict):
                self.fail(label, "must be a name or a mapping with name and parent")
            self.no_unknown_keys(g, {"name", "parent"}, label)
            name = self.name(g.get("name"), f"{label}.name")
            parent = g.get("parent")
            if parent is not None:
                parent = self.name(parent, f"{label}.parent")
                if parent not in {x.name for x in groups}:
                    self.fail(f"{label}.parent", f"{parent!r} must be declared before {name!r}")
            if name in {x.name for x in groups}:
                self.fail(f"{label}.name", f"{name!r} is declared twice")
            groups.append(ThingGroupSpec(name=name, parent=parent))
        return RegistrySpec(thing_types=types, thing_groups=tuple(groups))

    def sizing(self, data: Any) -> tuple[RegionSizing, dict[str, RegionSizing]]:
        if not isinstance(data, dict):
            self.fail("sizing", "must be a mapping of 'default' and regions to sizes")
        default = self.one_sizing(data.get("default", {}) or {}, "sizing.default", RegionSizing())
        overrides: dict[str, RegionSizing] = {}
        for key, value in data.items():
            if key == "default":
                continue
            region = self.region(key, f"sizing.{key}")
            overrides[region] = self.one_sizing(value or {}, f"sizing.{key}", default)
        return default, overrides

    def one_sizing(self, data: Any, label: str, base: RegionSizing) -> RegionSizing:
        if not isinstance(data, dict):
            self.fail(label, "must be a mapping")
        self.no_unknown_keys(data, _SIZING_KEYS, label)
        mode_raw = data.get("kinesis_mode", base.kinesis_mode.value)
        try:
            mode = KinesisMode(mode_raw)
        except ValueError:
            self.fail(f"{label}.kinesis_mode", f"{mode_raw!r} is not ON_DEMAND or PROVISIONED")
        shards = self.int_in(data, "kinesis_shards", label, base.kinesis_shards, 1, 500)
        retention = self.int_in(data, "retention_hours", label, base.retention_hours, 24, 8760)
        transition = self.int_in(data, "lake_transition_days", label, base.lake_transition_days, 30, 3650)
        expiration = self.int_in(data, "lake_expiration_days", label, base.lake_expiration_days, 0, 36500)
        if expiration and expiration <= transition:
            self.fail(f"{label}.lake_expiration_days",
                      f"{expiration} must be 0 (keep) or after lake_transition_days ({transition})")
        return RegionSizing(mode, shards, retention, transition, expiration)

    def int_in(self, data: Mapping[str, Any], key: str, label: str, default: int, lo: int, hi: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(f"{label}.{key}", f"{value!r} must be a whole number from {lo} to {hi}")
        return int(value)
