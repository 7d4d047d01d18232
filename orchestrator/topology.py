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


class FailoverControl(str, Enum):
    """How traffic moves between regions on failover.

    DNS: records named by role (set identifiers `primary`/`secondary`) whose endpoint and health
    check move, one valid UPSERT each, through the DNS stack (Route 53's control plane, us-east-1).
    ARC: Route 53 Application Recovery Controller routing controls gate each region's health check;
    failover flips routing-control states through the cluster's data-plane endpoints and changes
    no record (billed per cluster-hour)."""

    DNS = "dns"
    ARC = "arc"


class KinesisMode(str, Enum):
    ON_DEMAND = "ON_DEMAND"
    PROVISIONED = "PROVISIONED"


# Anchored with \Z and used with fullmatch: `$` also matches before a trailing newline.
_DOMAIN_RE = re.compile(r"(?=.{1,253}\Z)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}\Z")
_ENV_RE = re.compile(r"[a-z][a-z0-9-]{0,30}\Z")
_NAME_RE = re.compile(r"[a-zA-Z0-9:_-]{1,128}\Z")

MAX_TOPOLOGY_BYTES = 64 * 1024  # a topology is a page of YAML; anything larger is a mistake or an attack
MAX_NESTING = 12  # deepest legitimate path: sizing.<region>.<key>
MAX_SHOWN = 60  # characters of a rejected value shown in an error line
TOPOLOGY_SUFFIX = ".topology.yaml"

_TOP_KEYS = {
    "env", "domain", "hosted_zone", "primary", "secondaries", "routing", "failover_control", "residency",
    "home_region", "backup_region", "registry", "sizing", "quotas", "tags", "iam", "allowed_account_ids", "accounts",
}
_SIZING_KEYS = {"kinesis_mode", "kinesis_shards", "retention_hours", "lake_transition_days",
                "lake_expiration_days"}
_REGISTRY_KEYS = {"thing_types", "thing_groups", "retained_topics", "command_outbox"}
_IAM_KEYS = {"permissions_boundary", "path"}

# The tags every program sets itself (programs/region.py, dns.py, replication.py); `tags:` adds to them.
FIXED_TAG_KEYS = ("Environment", "ManagedBy", "Component")
MAX_TAGS = 50  # per resource, AWS's limit for most services (IAM, S3, KMS, Kinesis, IoT)
_TAG_RE = re.compile(r"[\w .:/=+\-@]*\Z", re.UNICODE)  # letters, digits, spaces and _ . : / = + - @
_ACCOUNT_ID_RE = re.compile(r"\d{12}\Z")
_PARTITION = r"aws(?:-cn|-us-gov)?"
_BOUNDARY_RE = re.compile(rf"arn:{_PARTITION}:iam::(?:\d{{12}}|aws):policy/[\w+=,.@/-]{{1,128}}\Z")
_ROLE_ARN_RE = re.compile(rf"arn:{_PARTITION}:iam::(\d{{12}}):role/[\w+=,.@/-]{{1,64}}\Z")
_IAM_PATH_RE = re.compile(r"/(?:[\x21-\x7e]{1,510}/)?\Z")
ACCOUNT_TARGETS = ("dns", "backups")  # besides member regions: what `accounts:` may name


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
    # MQTT retained-message topic prefixes carried to every secondary (orchestrator/registry/retained.py)
    retained_topics: tuple[str, ...] = ()
    # the command outbox's global table and replay functions (docs/adr/0002-command-outbox.md)
    command_outbox: bool = False


@dataclass(frozen=True)
class IamSettings:
    """Applied to every IAM role the programs create (org rules: a boundary, a path)."""

    path: str = "/"
    permissions_boundary: str = ""


def role_account(role_arn: str) -> str:
    """The account id in an IAM role ARN (validated by the topology)."""
    return role_arn.split(":")[4]


@dataclass(frozen=True)
class Topology:
    env: str
    domain: str
    hosted_zone: str
    primary: str
    secondaries: tuple[str, ...] = ()
    routing: RoutingMode = RoutingMode.SINGLE
    failover_control: FailoverControl = FailoverControl.DNS
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
    # Org fit: tags added to the three fixed ones, IAM role settings, the accounts the environment may
    # touch, and the role to assume per target (a member region, `dns`, `backups`) in another account.
    tags: Mapping[str, str] = field(default_factory=dict)
    iam: IamSettings = field(default_factory=IamSettings)
    allowed_account_ids: tuple[str, ...] = ()
    accounts: Mapping[str, str] = field(default_factory=dict)
    source: str = "<memory>"
    # Member regions DNS does not route to: a secondary whose promotion has not reached its DNS
    # step, or regions a latency-mode failover took out. Lifecycle state (`StateLayout.routing_path`),
    # not part of the file: attached when the topology is loaded for a command.
    unrouted: frozenset[str] = frozenset()

    @property
    def regions(self) -> tuple[str, ...]:
        """Every member region, primary first."""
        return (self.primary, *self.secondaries)

    @property
    def multi_region(self) -> bool:
        return len(self.regions) > 1

    def sizing(self, region: str) -> RegionSizing:
        return self.sizing_overrides.get(region, self.default_sizing)

    def role_for(self, target: str) -> str | None:
        """The role to assume for `target` (a member region, `dns` or `backups`); None: the caller's own account."""
        return self.accounts.get(target)

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

    def with_unrouted(self, regions: frozenset[str] | set[str]) -> Topology:
        """The same topology with DNS held away from `regions` (members only; the primary never)."""
        held = frozenset(regions) & frozenset(self.secondaries)
        return replace(self, unrouted=held)

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
            "failover_control": self.failover_control.value,
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
        if self.registry.retained_topics:
            doc["registry"]["retained_topics"] = list(self.registry.retained_topics)
        if self.registry.command_outbox:
            doc["registry"]["command_outbox"] = True
        sizing: dict[str, Any] = {"default": _sizing_doc(self.default_sizing)}
        for region, s in self.sizing_overrides.items():
            sizing[region] = _sizing_doc(s)
        doc["sizing"] = sizing
        if self.quotas:
            doc["quotas"] = dict(self.quotas)
        if self.tags:
            doc["tags"] = dict(self.tags)
        if self.iam != IamSettings():
            doc["iam"] = {"path": self.iam.path,
                          **({"permissions_boundary": self.iam.permissions_boundary}
                             if self.iam.permissions_boundary else {})}
        if self.allowed_account_ids:
            doc["allowed_account_ids"] = list(self.allowed_account_ids)
        if self.accounts:
            doc["accounts"] = dict(self.accounts)
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


def _short(value: Any) -> str:
    """A rejected value as shown in an error line: its repr, cut to MAX_SHOWN characters."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def file_env(path: Path) -> str | None:
    """The environment a file name declares (`<env>.topology.yaml`), or None."""
    name = path.name
    return name[:-len(TOPOLOGY_SUFFIX)] if name.endswith(TOPOLOGY_SUFFIX) else None


def read_text_capped(path: Path, label: str, *, limit: int = MAX_TOPOLOGY_BYTES) -> str:
    """A regular file's UTF-8 text, at most `limit` bytes; a FIFO, device or directory is refused
    without blocking (opened non-blocking, checked with fstat before any read)."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputRejected(f"{label}: topology file not found", hint="create it or pass --config PATH") from None
    except OSError as exc:
        raise InputRejected(f"{label}: cannot read topology file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputRejected(f"{label}: not a regular file (a pipe, device or directory cannot be a topology)")
        if info.st_size > limit:
            raise InputRejected(f"{label}: {info.st_size} bytes is larger than the {limit}-byte limit for a topology")
        data = os.read(fd, limit + 1)
    except OSError as exc:
        raise InputRejected(f"{label}: cannot read topology file: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputRejected(f"{label}: larger than the {limit}-byte limit for a topology")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRejected(f"{label}: not UTF-8 text (byte {exc.start})") from None


def parse_yaml(text: str, label: str) -> Any:
    """Strict YAML: no aliases (no alias bombs), no duplicate keys, bounded nesting."""
    import yaml  # deferred

    class StrictLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
            self.depth += 1
            try:
                if self.depth > MAX_NESTING:
                    raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_NESTING} levels",
                                                      self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, "a mapping key must be a plain value", key_node.start_mark) from None
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_short(key)}", key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputRejected(f"{label}:{where} malformed YAML: {problem}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # a 5,000-digit integer, a pathological file
        raise InputRejected(f"{label}: unreadable YAML ({type(exc).__name__}: {str(exc)[:MAX_SHOWN]})") from None


def load(path: Path, env: str | None = None) -> Topology:
    """Read and validate a topology file. Every problem is an `InputRejected` naming file and field.

    The file names its environment (an `env:` key, or the file name `<env>.topology.yaml`): a file
    used for another environment is refused, so `--env prod` never runs with dev's topology."""
    name = str(path)
    named_by_file = file_env(path)
    text = read_text_capped(path, name)
    data = parse_yaml(text, name)
    named_by_key = data.get("env") if isinstance(data, dict) else None
    if named_by_key is not None and not isinstance(named_by_key, str):
        raise InputRejected(f"{name}: env: {_short(named_by_key)} must be an environment name")
    if named_by_key is not None and named_by_file is not None and named_by_key != named_by_file:
        raise InputRejected(f"{name}: the file name says env {named_by_file!r} but its env key says "
                            f"{named_by_key!r}")
    named = named_by_key or named_by_file
    if named is None:
        raise InputRejected(f"{name}: the topology does not name its environment",
                            hint="add `env: <name>` or name the file <env>.topology.yaml")
    env = env or named
    if not _ENV_RE.fullmatch(env):
        raise InputRejected(f"{name}: environment name {_short(env)} must match [a-z][a-z0-9-]{{0,30}}")
    if named != env:
        raise InputRejected(f"{name}: this is the topology of env {named!r}, not of env {env!r}",
                            hint=f"pass --env {named}, or the topology file of {env}")
    return parse(data, env=env, source=name)


def parse(data: Any, *, env: str, source: str = "<memory>") -> Topology:
    v = _Validator(source)
    if not isinstance(data, dict):
        v.fail("", "the topology must be a mapping of keys to values")
    v.no_unknown_keys(data, _TOP_KEYS, "")
    if "env" in data and data["env"] != env:
        v.fail("env", f"{_short(data['env'])} does not match the environment {env!r}")
    domain = v.domain(data, "domain")
    zone = v.domain(data, "hosted_zone").rstrip(".")
    if not (domain == zone or domain.endswith("." + zone)):
        v.fail("domain", f"{domain!r} is not inside hosted_zone {zone!r}")
    if domain == zone:  # the records are CNAMEs (IoT endpoints are no alias targets)
        v.fail("domain", f"{domain!r} is the apex of hosted_zone {zone!r}: Route 53 allows no CNAME at a "
                         f"zone apex; use a name inside it (e.g. iot.{zone})")
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
        v.fail("routing", f"{_short(routing_raw)} is not one of single, failover, latency")
    if routing is not RoutingMode.SINGLE and not secondaries:
        v.fail("routing", f"{routing.value} routing needs at least two regions (only {primary} is listed)")
    control_raw = data.get("failover_control", FailoverControl.DNS.value)
    try:
        control = FailoverControl(control_raw)
    except ValueError:
        v.fail("failover_control", f"{_short(control_raw)} is not one of dns, arc")
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
    tags = v.tags(data.get("tags", {}))
    iam = v.iam(data.get("iam", {}))
    allowed = v.account_ids(data.get("allowed_account_ids", []))
    accounts = v.accounts(data.get("accounts", {}), (primary, *secondaries), allowed)
    return Topology(
        env=env, domain=domain, hosted_zone=zone, primary=primary, secondaries=secondaries,
        routing=routing, failover_control=control, residency=residency, home_region=home, backup_region=backup,
        registry=registry, default_sizing=default_sizing, sizing_overrides=overrides, quotas=quotas,
        tags=tags, iam=iam, allowed_account_ids=allowed, accounts=accounts, source=source,
    )


def _revalidate(topology: Topology) -> Topology:
    parsed = parse(topology.to_document(), env=topology.env, source=topology.source)
    return replace(parsed, unrouted=topology.unrouted & frozenset(parsed.secondaries))


def save(topology: Topology, path: Path) -> None:
    """Write the topology back atomically, keeping the file's mode, comments, key order and the
    values that did not change (a round-trip YAML edit); a new file gets a header for reviewers."""
    from orchestrator.state import atomic_write_text

    try:
        mode: int | None = path.stat().st_mode & 0o7777  # a reviewed file keeps its mode
        current: str | None = read_text_capped(path, str(path))
    except FileNotFoundError:
        mode, current = 0o644, None
    except InputRejected:
        mode, current = None, None
    doc = topology.to_document()
    if current is not None and isinstance(parse_yaml(current, str(path)), dict):
        text = _round_trip(current, doc)
    else:
        import yaml

        header = (
            f"# Topology of environment {topology.env!r}: the single source of truth for its stacks.\n"
            "# Changed by `orchestrate promote-secondary`, `failover` and `failback`; review it in a PR.\n"
        )
        text = header + yaml.safe_dump({"env": topology.env, **doc}, sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text, mode=mode)


def _round_trip(current: str, doc: dict[str, Any]) -> str:
    """`current` (YAML text) with only the values that differ from `doc` replaced; comments stay."""
    import io

    from ruamel.yaml import YAML  # deferred: only `save` needs it, never `--help`

    rt = YAML()
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=2, offset=0)
    data = rt.load(current)

    def merge(target: Any, wanted: dict[str, Any]) -> None:
        for key, value in wanted.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                merge(target[key], value)
            elif key not in target or target[key] != value:
                target[key] = value

    merge(data, doc)
    for key in list(data):  # optional keys the new topology no longer has (backup_region)
        if key in _TOP_KEYS and key != "env" and key not in doc:
            del data[key]
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, fieldname: str, message: str) -> Any:
        where = f"{self.source}: {fieldname}: " if fieldname else f"{self.source}: "
        raise InputRejected(where + message)

    def show(self, value: Any) -> str:
        return _short(value)

    def no_unknown_keys(self, data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                text = str(key) if len(str(key)) <= MAX_SHOWN else str(key)[:MAX_SHOWN] + "…"
                label = f"{prefix}.{text}" if prefix else text
                self.fail(label, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def domain(self, data: Mapping[str, Any], key: str) -> str:
        value = data.get(key)
        if value is None:
            self.fail(key, "is required")
        if not isinstance(value, str) or not _DOMAIN_RE.fullmatch(value.rstrip(".").lower()) \
                or value != value.strip():
            self.fail(key, f"{_short(value)} is not a valid DNS name")
        return str(value).lower()

    def region(self, value: Any, label: str) -> str:
        if value is None:
            self.fail(label, "is required")
        if not isinstance(value, str) or value not in iot_regions():
            self.fail(label, f"{_short(value)} is not an AWS region where IoT Core is available")
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
        if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
            self.fail(label, f"{_short(value)} is not a valid IoT name (1-128 of a-z A-Z 0-9 : _ -)")
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
                    self.fail(f"{label}.parent", f"{_short(parent)} must be declared before {_short(name)}")
            if name in {x.name for x in groups}:
                self.fail(f"{label}.name", f"{_short(name)} is declared twice")
            groups.append(ThingGroupSpec(name=name, parent=parent))
        from orchestrator.registry.retained import normalize_prefixes

        retained = normalize_prefixes(data.get("retained_topics"), source=self.source)
        outbox = data.get("command_outbox", False)
        if not isinstance(outbox, bool):
            self.fail("registry.command_outbox", f"must be true or false, not {_short(outbox)}")
        return RegistrySpec(thing_types=types, thing_groups=tuple(groups), retained_topics=retained,
                            command_outbox=outbox)

    def sizing(self, data: Any) -> tuple[RegionSizing, dict[str, RegionSizing]]:
        if not isinstance(data, dict):
            self.fail("sizing", "must be a mapping of 'default' and regions to sizes")
        default = self.one_sizing(data.get("default", {}) or {}, "sizing.default", RegionSizing())
        overrides: dict[str, RegionSizing] = {}
        for key, value in data.items():
            if key == "default":
                continue
            label = f"sizing.{str(key)[:MAX_SHOWN]}"
            region = self.region(key, label)
            overrides[region] = self.one_sizing(value or {}, label, default)
        return default, overrides

    def one_sizing(self, data: Any, label: str, base: RegionSizing) -> RegionSizing:
        if not isinstance(data, dict):
            self.fail(label, "must be a mapping")
        self.no_unknown_keys(data, _SIZING_KEYS, label)
        mode_raw = data.get("kinesis_mode", base.kinesis_mode.value)
        try:
            mode = KinesisMode(mode_raw)
        except ValueError:
            self.fail(f"{label}.kinesis_mode", f"{_short(mode_raw)} is not ON_DEMAND or PROVISIONED")
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
            self.fail(f"{label}.{key}", f"{_short(value)} must be a whole number from {lo} to {hi}")
        return int(value)

    # -- org fit -------------------------------------------------------------------------------
    def tags(self, data: Any) -> dict[str, str]:
        """AWS tag rules: key 1-128, value 0-256 characters of letters, digits, spaces and `_.:/=+-@`;
        no `aws:` prefix (reserved); at most 50 tags per resource counting the three fixed ones."""
        if data is None or data == {}:
            return {}
        if not isinstance(data, dict):
            self.fail("tags", "must be a mapping of tag keys to values")
        limit = MAX_TAGS - len(FIXED_TAG_KEYS)
        if len(data) > limit:
            self.fail("tags", f"{len(data)} tags: at most {limit} (AWS allows {MAX_TAGS} per resource, "
                              f"{len(FIXED_TAG_KEYS)} are set by the orchestrator)")
        out: dict[str, str] = {}
        for key, value in data.items():
            label = f"tags.{_short(key)}"
            if not isinstance(key, str) or not 1 <= len(key) <= 128 or not _TAG_RE.fullmatch(key):
                self.fail(label, "a tag key must be 1-128 letters, digits, spaces or _ . : / = + - @")
            if key.lower().startswith("aws:"):
                self.fail(label, "the aws: prefix is reserved for AWS")
            if key in FIXED_TAG_KEYS:
                self.fail(label, f"is set by the orchestrator (fixed tags: {', '.join(FIXED_TAG_KEYS)})")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                self.fail(label, f"{_short(value)} must be a string")
            text = str(value)
            if len(text) > 256 or not _TAG_RE.fullmatch(text):
                self.fail(label, "a tag value must be 0-256 letters, digits, spaces or _ . : / = + - @")
            out[key] = text
        return out

    def iam(self, data: Any) -> IamSettings:
        if data is None or data == {}:
            return IamSettings()
        if not isinstance(data, dict):
            self.fail("iam", "must be a mapping with permissions_boundary and path")
        self.no_unknown_keys(data, _IAM_KEYS, "iam")
        path = data.get("path", "/")
        if not isinstance(path, str) or len(path) > 512 or not _IAM_PATH_RE.fullmatch(path):
            self.fail("iam.path", f"{_short(path)} must be / or /a/path/ (1-512 printable ASCII, "
                                  "starting and ending with /)")
        boundary = data.get("permissions_boundary", "")
        if boundary and (not isinstance(boundary, str) or not _BOUNDARY_RE.fullmatch(boundary)):
            self.fail("iam.permissions_boundary", f"{_short(boundary)} is not the ARN of an IAM managed policy")
        return IamSettings(path=path, permissions_boundary=boundary or "")

    def account_ids(self, data: Any) -> tuple[str, ...]:
        if not isinstance(data, list):
            self.fail("allowed_account_ids", "must be a list of 12-digit account ids")
        out: list[str] = []
        for i, item in enumerate(data):
            if not isinstance(item, str) or not _ACCOUNT_ID_RE.fullmatch(item):
                self.fail(f"allowed_account_ids[{i}]",
                          f"{_short(item)} is not a 12-digit account id in quotes")
            if item in out:
                self.fail(f"allowed_account_ids[{i}]", f"{item} is listed twice")
            out.append(item)
        return tuple(out)

    def accounts(self, data: Any, members: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, str]:
        if data is None or data == {}:
            return {}
        if not isinstance(data, dict):
            self.fail("accounts", "must map a member region, dns or backups to the role ARN to assume")
        self.no_unknown_keys(data, {*members, *ACCOUNT_TARGETS}, "accounts")
        out: dict[str, str] = {}
        for target, arn in data.items():
            label = f"accounts.{target}"
            if not isinstance(arn, str) or not _ROLE_ARN_RE.fullmatch(arn):
                self.fail(label, f"{_short(arn)} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
            account = role_account(arn)
            if allowed and account not in allowed:
                self.fail(label, f"account {account} is not in allowed_account_ids {list(allowed)}")
            out[target] = arn
        roles = {out.get(r) for r in members}
        if len(members) > 1 and len(roles) > 1:
            self.fail("accounts", f"member regions {', '.join(members)} must share one account (one replication "
                                  "stack joins them): give each the same role, or none")
        return out
