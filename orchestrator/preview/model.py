"""What a preview of one environment will change: typed and frozen, with no Pulumi in sight.

`orchestrator.engine.events` (inside the engine package, the only importer of `pulumi.automation`)
turns the engine events of one stack's preview into the `ResourceChange`s and counts of a
`StackPreview`. An `EnvironmentPreview` is every stack of one environment plus the topology before
and after, and is what `orchestrator.preview.render` turns into a PR comment, text or JSON.

This module never imports pulumi.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.topology import Topology


class Op(str, Enum):
    """What happens to one resource. The engine's replacement sub-steps fold into REPLACE."""

    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    SAME = "same"
    READ = "read"
    REFRESH = "refresh"
    IMPORT = "import"
    DISCARD = "discard"  # forgotten from state (retain_on_delete): the cloud resource stays


# Ops that change something and are listed resource by resource; the rest are only counted.
CHANGING_OPS: frozenset[Op] = frozenset({Op.CREATE, Op.UPDATE, Op.REPLACE, Op.DELETE, Op.IMPORT,
                                         Op.DISCARD})
# Ops that remove or recreate the cloud resource: data or traffic can be lost.
DESTRUCTIVE_OPS: frozenset[Op] = frozenset({Op.REPLACE, Op.DELETE})

# Resource types that hold data, identity or live traffic. A replace or delete of one of them is a
# warning at the top of every preview, whether or not the program marks it `protect`. This is the
# only list of them; add a type here when a program starts declaring a new kind of state.
STATEFUL_TYPES: frozenset[str] = frozenset({
    "aws:s3/bucket:Bucket",                # the data lake: objects are lost on replace/delete
    "aws:s3/bucketV2:BucketV2",            # the deprecated name of the same bucket
    "aws:kinesis/stream:Stream",           # telemetry still in the stream's retention window
    "aws:dynamodb/table:Table",            # registry replication table
    "aws:dynamodb/tableReplica:TableReplica",
    "aws:route53/record:Record",           # a DNS record of a live region: devices resolve it
    # the custom domain's TLS endpoint in a region: AWS cannot change its certificate in place, a
    # replacement is delete-then-create under the same name (devices of that region cannot connect)
    "aws:iot/domainConfiguration:DomainConfiguration",
    "aws:iot/certificate:Certificate",     # device identities: devices cannot reconnect
    "aws:iot/caCertificate:CaCertificate",
    "aws:iot/thing:Thing",                 # registry entries devices and rules refer to
    "aws:iot/thingType:ThingType",
    "aws:iot/thingGroup:ThingGroup",
})

# Properties whose old and new values are shown (not just their names), because reviewers must
# see where DNS points. Only these types and properties; secret values stay masked.
SHOWN_VALUES: Mapping[str, frozenset[str]] = {
    "aws:route53/record:Record": frozenset({
        "name", "type", "records", "ttl", "setIdentifier", "healthCheckId",
        "failoverRoutingPolicies", "latencyRoutingPolicies", "weightedRoutingPolicies", "aliases",
    }),
    "aws:route53/healthCheck:HealthCheck": frozenset({"fqdn", "port", "resourcePath", "type",
                                                       "failureThreshold", "requestInterval"}),
}


def is_stateful(type_: str) -> bool:
    return type_ in STATEFUL_TYPES


class PlaceholderReason(str, Enum):
    NOT_DEPLOYED = "not_deployed"  # the upstream stack has never been deployed
    WOULD_CHANGE = "would_change"  # the upstream's preview changes the value; known after its `up`


# The value prefix orchestrator.stacks.wiring gives placeholder outputs: "placeholder:<region>[:<output>]".
PLACEHOLDER_PREFIX = "placeholder:"
_PLACEHOLDER_RE = re.compile(r"placeholder:([a-z]{2}(?:-[a-z]+)+-\d)(?::([A-Za-z0-9_]+))?")


@dataclass(frozen=True)
class Placeholder:
    """A config key of a stack filled with a stand-in, because its upstream value is not known."""

    key: str  # the config key, e.g. "iot-platform:targets"
    upstream: str = ""  # the upstream stack, e.g. "dev-region-eu-central-1"
    output: str = ""  # the upstream output, e.g. "iotEndpoint"
    reason: PlaceholderReason = PlaceholderReason.NOT_DEPLOYED

    def describe(self) -> str:
        what = self.output or "value"
        key = _short_key(self.key)
        if self.upstream:
            why = ("not deployed yet" if self.reason is PlaceholderReason.NOT_DEPLOYED
                   else "changes in this preview")
            return (f"{what} of {self.upstream} {why}: placeholder used for {key}; "
                    "`up` will use the real value")
        return f"{key} holds a placeholder (upstream not deployed yet); `up` will use the real value"


def _short_key(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else key


def placeholders_in_config(config: Mapping[str, str], env: str,
                           reason: PlaceholderReason = PlaceholderReason.NOT_DEPLOYED,
                           ) -> tuple[Placeholder, ...]:
    """Every (key, upstream region stack, output) placeholder found in a stack's config values."""
    found: list[Placeholder] = []
    for key, value in config.items():
        if PLACEHOLDER_PREFIX not in value:
            continue
        seen = False
        for m in _PLACEHOLDER_RE.finditer(value):
            p = Placeholder(key, f"{env}-region-{m.group(1)}", m.group(2) or "", reason)
            if p not in found:
                found.append(p)
            seen = True
        if not seen:
            found.append(Placeholder(key, reason=reason))
    return tuple(found)


@dataclass(frozen=True)
class ValueChange:
    """Old and new value of one shown property (see SHOWN_VALUES), already masked and rendered."""

    path: str
    old: str | None  # None: absent before (create)
    new: str | None  # None: absent after (delete)


@dataclass(frozen=True)
class ResourceChange:
    urn: str
    type: str
    name: str
    op: Op
    diffs: tuple[str, ...] = ()  # changed property paths, e.g. ("tags.env", "records[0]")
    protected: bool = False
    stateful: bool = False
    replace_keys: tuple[str, ...] = ()  # properties that force the replacement
    values: tuple[ValueChange, ...] = ()  # old -> new of shown properties (DNS)

    @property
    def risky(self) -> bool:
        """A replace or delete of something protected or stateful: called out at the top."""
        return self.op in DESTRUCTIVE_OPS and (self.protected or self.stateful)


@dataclass(frozen=True)
class StackPreview:
    stack: str
    kind: str  # region | dns | replication
    region: str
    changes: tuple[ResourceChange, ...] = ()  # changed resources only (see CHANGING_OPS)
    counts: Mapping[Op, int] = field(default_factory=dict)  # every op, incl. SAME (unchanged)
    placeholders: tuple[Placeholder, ...] = ()  # plain config keys are accepted and wrapped
    error: str | None = None

    def __post_init__(self) -> None:
        counts: dict[Op, int] = {}
        for op, n in dict(self.counts).items():
            key = Op(op)
            counts[key] = counts.get(key, 0) + int(n)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "changes", tuple(self.changes))
        object.__setattr__(self, "placeholders", tuple(
            p if isinstance(p, Placeholder) else Placeholder(str(p)) for p in self.placeholders))

    def count(self, *ops: Op) -> int:
        return sum(self.counts.get(op, 0) for op in ops)

    @property
    def unchanged(self) -> int:
        return self.count(Op.SAME, Op.READ, Op.REFRESH)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or self.count(*CHANGING_OPS) > 0


@dataclass(frozen=True)
class EnvironmentPreview:
    env: str
    commit: str
    stacks: tuple[StackPreview, ...]
    topology_before: Topology | None = None
    topology_after: Topology | None = None
    backend: str = ""  # where the state is, without credentials (`backend_display`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stacks", tuple(self.stacks))

    @property
    def topology_changed(self) -> bool:
        """Regions, roles or routing differ (the file's path or sizing do not count)."""
        return _shape(self.topology_before) != _shape(self.topology_after)

    def risky(self) -> list[tuple[StackPreview, ResourceChange]]:
        return [(s, c) for s in self.stacks for c in s.changes if c.risky]

    @property
    def failed(self) -> tuple[StackPreview, ...]:
        return tuple(s for s in self.stacks if s.error)

    def totals(self) -> dict[Op, int]:
        out: dict[Op, int] = {}
        for s in self.stacks:
            for op, n in s.counts.items():
                out[op] = out.get(op, 0) + n
        return out


def _shape(t: Topology | None) -> tuple[Any, ...] | None:
    if t is None:
        return None
    return (t.domain, t.primary, tuple(t.secondaries), t.routing.value)
