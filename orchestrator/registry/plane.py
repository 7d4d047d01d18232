"""The device-management plane: the few objects that let devices join, authenticate and be updated.

Kinds (tens to hundreds per region, never millions, so one in-memory pass: list -> plan -> apply ->
read back):

    role_alias              credentials-provider aliases (regional; the IAM role they name is global)
    ca_certificate          JITP/JITR CAs, with status, auto-registration status and registration
                            config. A CA is registered in the destination in SNI_ONLY mode: DEFAULT
                            mode needs a verification certificate signed with the CA's private key,
                            which the orchestrator never holds (and which AWS allows in one account
                            per region only).
    job_template            immutable in AWS (no UpdateJobTemplate): a changed one is deleted and made again
    provisioning_template   fleet provisioning / JITP templates: the default version's body (a changed
                            body becomes a new default version there), role, enabled, and the
                            pre-provisioning hook, whose Lambda function must exist in the destination
    authorizer              custom authorizers: function (must exist in the destination), token key
                            name, token-signing public keys, status, caching
    indexing_configuration  fleet indexing (dynamic groups and search need it): one per region
    dynamic_thing_group     dynamic thing groups: query (index, query version), description, attributes;
                            made after the indexing configuration they need (kinds apply in order)
    event_configurations    registry events; the REQUIRED_EVENTS must be on in every region, as
                            continuous replication reads them: a sync turns them on in the destination

ARNs naming the source region in documents and configs are moved to the destination (or `*`) as
policies are (`orchestrator.registry.policydoc`). Deletions (what the source no longer has) happen
only with `prune`, through the prune guard's budget and confirmation (`orchestrator.registry.guards`);
a singleton is never deleted. `sync_plane` says ok only when what it wrote reads back equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from orchestrator.errors import GuardRefused
from orchestrator.registry.policydoc import RegionRewrite, normalize_document, rewrite_region

REQUIRED_EVENTS = ("THING", "THING_GROUP", "THING_TYPE", "THING_GROUP_MEMBERSHIP",
                   "THING_GROUP_HIERARCHY", "THING_TYPE_ASSOCIATION")
SINGLETONS = ("indexing_configuration", "event_configurations")
TEMPLATE_VERSIONS_MAX = 5  # provisioning template versions AWS keeps per template


class PlaneKind(str, Enum):
    ROLE_ALIAS = "role_alias"
    CA_CERTIFICATE = "ca_certificate"
    JOB_TEMPLATE = "job_template"
    PROVISIONING_TEMPLATE = "provisioning_template"
    AUTHORIZER = "authorizer"
    INDEXING = "indexing_configuration"
    DYNAMIC_GROUP = "dynamic_thing_group"
    EVENTS = "event_configurations"


KINDS = tuple(k.value for k in PlaneKind)
_PROVISIONING_FIELDS = ("description", "templateBody", "provisioningRoleArn", "preProvisioningHook", "type")
_AUTHORIZER_FIELDS = ("authorizerFunctionArn", "tokenKeyName", "tokenSigningPublicKeys", "status")
_TEMPLATE_FIELDS = ("description", "documentSource", "document", "presignedUrlConfig",
                    "jobExecutionsRolloutConfig", "abortConfig", "timeoutConfig", "jobExecutionsRetryConfig")


@dataclass(frozen=True)
class PlaneSnapshot:
    """One region's plane objects: kind -> name -> comparable description (JSON values only)."""

    region: str
    items: Mapping[str, Mapping[str, Any]]
    notes: tuple[str, ...] = ()

    def kind(self, kind: str) -> Mapping[str, Any]:
        return self.items.get(kind, {})

    def count(self) -> int:
        return sum(len(v) for k, v in self.items.items() if k not in SINGLETONS)

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "items": {k: dict(v) for k, v in self.items.items()},
                "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlaneSnapshot:
        items = data.get("items") or {}
        unknown = sorted(set(items) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown plane kind {unknown[0]!r}")
        return cls(str(data["region"]), {k: dict(v) for k, v in items.items()}, tuple(data.get("notes") or ()))


def _clean(value: Any) -> Any:
    """JSON-safe, without empty values (AWS omits what moto returns as null and vice versa)."""
    if isinstance(value, dict):
        out = {k: _clean(v) for k, v in value.items() if v not in (None, {}, [], "")}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("ResourceNotFoundException", "NotFoundException")


def read_plane(caller: Any) -> PlaneSnapshot:
    """Every plane object of the caller's region (a `Caller`: rate-limited, retried reads)."""
    items: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
    for name in caller.pages("list_role_aliases"):
        d = caller.call("describe_role_alias", roleAlias=name)["roleAliasDescription"]
        items["role_alias"][name] = _clean({"roleArn": d.get("roleArn"),
                                            "credentialDurationSeconds": d.get("credentialDurationSeconds")})
    for row in caller.pages("list_ca_certificates"):
        d = caller.call("describe_ca_certificate", certificateId=row["certificateId"])
        desc = d.get("certificateDescription") or {}
        items["ca_certificate"][row["certificateId"]] = _clean({
            "status": desc.get("status"), "autoRegistrationStatus": desc.get("autoRegistrationStatus") or "DISABLE",
            "certificatePem": desc.get("certificatePem"), "registrationConfig": d.get("registrationConfig"),
            "certificateMode": desc.get("certificateMode") or row.get("certificateMode")})
    for row in caller.pages("list_job_templates"):
        d = caller.call("describe_job_template", jobTemplateId=row["jobTemplateId"])
        items["job_template"][row["jobTemplateId"]] = _clean({f: d.get(f) for f in _TEMPLATE_FIELDS})
    for row in caller.pages("list_provisioning_templates"):
        d = caller.call("describe_provisioning_template", templateName=row["templateName"])
        items["provisioning_template"][row["templateName"]] = _clean(
            {f: d.get(f) for f in _PROVISIONING_FIELDS} | {"enabled": bool(d.get("enabled"))})
    for name in (a["authorizerName"] for a in caller.pages("list_authorizers")):
        d = caller.call("describe_authorizer", authorizerName=name)["authorizerDescription"]
        items["authorizer"][name] = _clean({f: d.get(f) for f in _AUTHORIZER_FIELDS}
                                           | {"signingDisabled": bool(d.get("signingDisabled")),
                                              "enableCachingForHttp": bool(d.get("enableCachingForHttp"))})
    for row in caller.pages("list_thing_groups"):  # ListThingGroups cannot tell dynamic ones apart
        d = caller.call("describe_thing_group", thingGroupName=row["groupName"])
        if d.get("queryString"):
            items["dynamic_thing_group"][row["groupName"]] = dynamic_group_description(d)
    items["indexing_configuration"]["default"] = indexing_description(caller.call("get_indexing_configuration"))
    events = caller.call("describe_event_configurations").get("eventConfigurations") or {}
    items["event_configurations"]["default"] = {t: bool((c or {}).get("Enabled")) for t, c in sorted(events.items())}
    return PlaneSnapshot(caller.region, items)


def dynamic_group_description(d: Mapping[str, Any]) -> dict[str, Any]:
    """A DescribeThingGroup answer of a dynamic group, as the plane compares it."""
    props = d.get("thingGroupProperties") or {}
    return dict(_clean({
        "queryString": d["queryString"], "indexName": d.get("indexName"),
        "queryVersion": d.get("queryVersion"), "description": props.get("thingGroupDescription"),
        "attributes": (props.get("attributePayload") or {}).get("attributes")}))


def indexing_description(idx: Mapping[str, Any]) -> dict[str, Any]:
    """A GetIndexingConfiguration answer, as the plane compares it."""
    return dict(_clean({
        "thingIndexingConfiguration": idx.get("thingIndexingConfiguration") or {"thingIndexingMode": "OFF"},
        "thingGroupIndexingConfiguration": idx.get("thingGroupIndexingConfiguration")
        or {"thingGroupIndexingMode": "OFF"}}))


# -- plan ------------------------------------------------------------------------------------------

class PlaneAction(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"  # delete, then create (immutable kinds)
    DELETE = "delete"


@dataclass(frozen=True)
class PlaneOp:
    kind: str
    action: PlaneAction
    name: str
    want: Mapping[str, Any] = field(default_factory=dict)  # the destination's description after the op

    def describe(self) -> str:
        return f"{self.action.value} {self.kind} {self.name}"


def _moved(value: Any, src: str, dst: str, mode: RegionRewrite) -> Any:
    """`value` with the source region's ARNs moved (JSON round trip: every string is covered)."""
    text = json.dumps(value, sort_keys=True)
    moved, _ = rewrite_region(text, src, dst, mode)
    return json.loads(moved)


def desired(src: PlaneSnapshot, dst_region: str, mode: RegionRewrite = RegionRewrite.DESTINATION,
            dst: PlaneSnapshot | None = None) -> dict[str, dict[str, Any]]:
    """What the destination should hold: the source's objects, moved to the destination region."""
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        out[kind] = {n: _moved(v, src.region, dst_region, mode) for n, v in src.kind(kind).items()}
    for ca_id, ca in out["ca_certificate"].items():
        ca["certificateMode"] = "SNI_ONLY"  # see the module's docstring
        have = dst.kind("ca_certificate").get(ca_id) if dst is not None else None
        if have is not None and have.get("certificateMode") == "DEFAULT":
            ca["certificateMode"] = "DEFAULT"  # registered there already with its own verification
    for name, tpl in out["job_template"].items():
        if "document" in tpl:
            tpl["document"] = _moved_text(src.kind("job_template")[name]["document"], src.region, dst_region, mode)
    events = dict(out["event_configurations"].get("default") or {})
    for t in REQUIRED_EVENTS:
        events[t] = True
    out["event_configurations"] = {"default": dict(sorted(events.items()))}
    return out


def _moved_text(document: str, src: str, dst: str, mode: RegionRewrite) -> str:
    return rewrite_region(document, src, dst, mode)[0]


def plan_plane(src: PlaneSnapshot, dst: PlaneSnapshot, *, mode: RegionRewrite = RegionRewrite.DESTINATION,
               prune: bool = False, additive: bool = False) -> list[PlaneOp]:
    """The operations that make `dst` hold `desired(src)`. `additive` (a restore without
    overwrite): only what the destination lacks is created and events are only turned on; nothing
    there is changed back (a CA deactivated since the backup stays inactive)."""
    want = desired(src, dst.region, mode, dst)
    if additive:
        have_events = dst.kind("event_configurations").get("default") or {}
        want["event_configurations"]["default"] = {
            t: v or bool(have_events.get(t)) for t, v in want["event_configurations"]["default"].items()}
    ops: list[PlaneOp] = []
    for kind in KINDS:
        have = dst.kind(kind)
        for name, w in sorted(want[kind].items()):
            h = have.get(name)
            if kind == "event_configurations":
                h_cmp = {t: v for t, v in (h or {}).items() if t in w}
                if h_cmp != w:
                    ops.append(PlaneOp(kind, PlaneAction.UPDATE, name, w))
            elif h is None:
                ops.append(PlaneOp(kind, PlaneAction.UPDATE if kind in SINGLETONS else PlaneAction.CREATE, name, w))
            elif not additive and _comparable(kind, h) != _comparable(kind, w):
                action = PlaneAction.REPLACE if kind == "job_template" or (
                    kind == "ca_certificate" and h.get("certificatePem") != w.get("certificatePem")) or (
                    kind == "provisioning_template" and h.get("type") != w.get("type")) or (
                    kind == "authorizer" and h.get("signingDisabled") != w.get("signingDisabled")) \
                    else PlaneAction.UPDATE
                ops.append(PlaneOp(kind, action, name, w))
        if prune and not additive and kind not in SINGLETONS:
            ops.extend(PlaneOp(kind, PlaneAction.DELETE, name) for name in sorted(set(have) - set(want[kind])))
    return ops


def _comparable(kind: str, value: Mapping[str, Any]) -> Any:
    if kind == "provisioning_template" and "templateBody" in value:
        return {**value, "templateBody": normalize_document(value["templateBody"])}
    if kind == "ca_certificate":  # the mode is chosen per region (see the module's docstring)
        return {k: v for k, v in value.items() if k != "certificateMode"}
    if kind == "job_template" and "document" in value:
        return {**value, "document": normalize_document(value["document"])}
    return value


def check_prune(ops: list[PlaneOp], dst: PlaneSnapshot, guard: Any | None) -> None:
    """Deletions need a guard: its budget over the destination's plane objects, then its
    confirmation (GuardRefused, exit 4, before anything is written)."""
    deletions = [op for op in ops if op.action is PlaneAction.DELETE]
    if not deletions:
        return
    if guard is None:
        raise GuardRefused(f"prune would delete {len(deletions)} plane objects from {dst.region} without a guard")
    allowed = guard.budget.limit(dst.count())
    if len(deletions) > allowed:
        raise GuardRefused(
            f"prune would delete {len(deletions)} plane objects from {dst.region}; the deletion budget is "
            f"{allowed} (--max-delete {guard.budget}); nothing was deleted",
            hint="check the source region; raise --max-delete only if this is meant")
    if getattr(guard, "notify", None) is not None:
        for op in deletions:
            guard.notify(f"  {op.describe()}")
    if guard.confirm is None:
        raise GuardRefused(f"prune would delete {len(deletions)} plane objects from {dst.region}; "
                           "not confirmed, nothing was deleted", hint="pass --yes in automation")
    guard.confirm(f"delete {len(deletions)} plane objects from {dst.region}?", dst.region)


# -- apply -----------------------------------------------------------------------------------------

def _apply_one(caller: Any, op: PlaneOp) -> None:
    w, name = op.want, op.name
    if op.kind == "role_alias":
        if op.action is PlaneAction.DELETE:
            caller.call("delete_role_alias", roleAlias=name)
            return
        args: dict[str, Any] = {"roleAlias": name, "roleArn": w["roleArn"]}
        if "credentialDurationSeconds" in w:
            args["credentialDurationSeconds"] = w["credentialDurationSeconds"]
        caller.call("create_role_alias" if op.action is PlaneAction.CREATE else "update_role_alias", **args)
    elif op.kind == "job_template":
        if op.action in (PlaneAction.DELETE, PlaneAction.REPLACE):
            caller.call("delete_job_template", jobTemplateId=name)
        if op.action is not PlaneAction.DELETE:
            caller.call("create_job_template", jobTemplateId=name, **{f: w[f] for f in _TEMPLATE_FIELDS if f in w})
    elif op.kind == "ca_certificate":
        if op.action in (PlaneAction.DELETE, PlaneAction.REPLACE):
            caller.call("update_ca_certificate", certificateId=name, newStatus="INACTIVE")
            caller.call("delete_ca_certificate", certificateId=name)
        if op.action in (PlaneAction.CREATE, PlaneAction.REPLACE):
            args = {"caCertificate": w["certificatePem"], "certificateMode": "SNI_ONLY",
                                    "setAsActive": w.get("status") == "ACTIVE",
                                    "allowAutoRegistration": w.get("autoRegistrationStatus") == "ENABLE"}
            if w.get("registrationConfig"):
                args["registrationConfig"] = w["registrationConfig"]
            caller.call("register_ca_certificate", **args)
        elif op.action is PlaneAction.UPDATE:
            args = {"certificateId": name, "newStatus": w.get("status", "INACTIVE"),
                    "newAutoRegistrationStatus": w.get("autoRegistrationStatus", "DISABLE")}
            if w.get("registrationConfig"):
                args["registrationConfig"] = w["registrationConfig"]
            caller.call("update_ca_certificate", **args)
    elif op.kind == "provisioning_template":
        _apply_template(caller, op)
    elif op.kind == "authorizer":
        _apply_authorizer(caller, op)
    elif op.kind == "indexing_configuration":
        caller.call("update_indexing_configuration", **w)
    elif op.kind == "dynamic_thing_group":
        _apply_dynamic_group(caller, op)
    elif op.kind == "event_configurations":
        caller.call("update_event_configurations",
                    eventConfigurations={t: {"Enabled": v} for t, v in w.items()})


def apply_op(caller: Any, op: PlaneOp) -> None:
    """One planned operation, as `apply_plane` applies it (continuous replication applies single ops)."""
    _apply_one(caller, op)


def _apply_template(caller: Any, op: PlaneOp) -> None:
    w, name = op.want, op.name
    if op.action in (PlaneAction.DELETE, PlaneAction.REPLACE):
        caller.call("delete_provisioning_template", templateName=name)
    if op.action is PlaneAction.DELETE:
        return
    if op.action in (PlaneAction.CREATE, PlaneAction.REPLACE):
        args = {f: w[f] for f in _PROVISIONING_FIELDS if f in w}
        caller.call("create_provisioning_template", templateName=name, enabled=w.get("enabled", False), **args)
        return
    have = caller.call("describe_provisioning_template", templateName=name)
    if normalize_document(have.get("templateBody", "")) != normalize_document(w.get("templateBody", "")):
        versions = caller.call("list_provisioning_template_versions", templateName=name).get("versions") or []
        if len(versions) >= TEMPLATE_VERSIONS_MAX:  # AWS keeps 5: the oldest non-default one makes room
            oldest = min(v["versionId"] for v in versions if not v.get("isDefaultVersion"))
            caller.call("delete_provisioning_template_version", templateName=name, versionId=oldest)
        caller.call("create_provisioning_template_version", templateName=name, templateBody=w["templateBody"],
                    setAsDefault=True)
    args = {"templateName": name, "description": w.get("description", ""), "enabled": w.get("enabled", False)}
    if "provisioningRoleArn" in w:
        args["provisioningRoleArn"] = w["provisioningRoleArn"]
    if "preProvisioningHook" in w:
        args["preProvisioningHook"] = w["preProvisioningHook"]
    elif have.get("preProvisioningHook"):
        args["removePreProvisioningHook"] = True
    caller.call("update_provisioning_template", **args)


def _apply_dynamic_group(caller: Any, op: PlaneOp) -> None:
    w, name = op.want, op.name
    if op.action is PlaneAction.DELETE:
        caller.call("delete_dynamic_thing_group", thingGroupName=name)
        return
    props = {"thingGroupDescription": w.get("description", ""),
             "attributePayload": {"attributes": dict(w.get("attributes") or {}), "merge": False}}
    query = {k: w[k] for k in ("indexName", "queryVersion") if k in w}
    if op.action is PlaneAction.CREATE:
        caller.call("create_dynamic_thing_group", thingGroupName=name, queryString=w["queryString"],
                    thingGroupProperties=props, **query)
    else:
        caller.call("update_dynamic_thing_group", thingGroupName=name, queryString=w["queryString"],
                    thingGroupProperties=props, **query)


def _apply_authorizer(caller: Any, op: PlaneOp) -> None:
    w, name = op.want, op.name
    if op.action in (PlaneAction.DELETE, PlaneAction.REPLACE):
        caller.call("update_authorizer", authorizerName=name, status="INACTIVE")  # AWS deletes only INACTIVE ones
        caller.call("delete_authorizer", authorizerName=name)
    if op.action is PlaneAction.DELETE:
        return
    args = {f: w[f] for f in _AUTHORIZER_FIELDS if f in w}
    args["enableCachingForHttp"] = w.get("enableCachingForHttp", False)
    if op.action is PlaneAction.UPDATE:
        caller.call("update_authorizer", authorizerName=name, **args)
    else:
        caller.call("create_authorizer", authorizerName=name, signingDisabled=w.get("signingDisabled", False), **args)


@dataclass(frozen=True)
class PlaneReport:
    src_region: str
    dst_region: str
    ops: tuple[PlaneOp, ...]
    applied: int
    errors: tuple[tuple[str, str], ...] = ()  # (op, message)
    unequal: tuple[str, ...] = ()  # kinds/names that did not read back equal
    warnings: tuple[str, ...] = ()
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.unequal

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for op in self.ops:
            out.setdefault(op.kind, {}).setdefault(op.action.value, 0)
            out[op.kind][op.action.value] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"from": self.src_region, "to": self.dst_region, "ok": self.ok, "dry_run": self.dry_run,
                "planned": len(self.ops), "applied": self.applied, "counts": self.counts(),
                "errors": [{"op": o, "message": m} for o, m in self.errors], "unequal": list(self.unequal),
                "warnings": list(self.warnings)}


def _warnings(src: PlaneSnapshot) -> tuple[str, ...]:
    events = src.kind("event_configurations").get("default") or {}
    off = [t for t in REQUIRED_EVENTS if not events.get(t)]
    if off:
        return (f"registry events {', '.join(off)} are off in {src.region}: continuous replication from "
                f"{src.region} misses those changes (turn them on there: a sync from another region does)",)
    return ()


def apply_plane(src: PlaneSnapshot, dst_caller: Any, *, mode: RegionRewrite = RegionRewrite.DESTINATION,
                prune: bool = False, guard: Any | None = None, dry_run: bool = False,
                dst: PlaneSnapshot | None = None, additive: bool = False) -> PlaneReport:
    """Make the destination's plane match `src` (a region's snapshot or a backup's), then read it back."""
    dst = dst or read_plane(dst_caller)
    ops = plan_plane(src, dst, mode=mode, prune=prune, additive=additive)
    warnings = _warnings(src)
    if dry_run:
        return PlaneReport(src.region, dst.region, tuple(ops), 0, warnings=warnings, dry_run=True)
    check_prune(ops, dst, guard)
    errors: list[tuple[str, str]] = []
    applied = 0
    for op in ops:
        try:
            _apply_one(dst_caller, op)
            applied += 1
        except Exception as exc:  # one refused object does not stop the others; it is reported
            if not hasattr(exc, "response") and not type(exc).__name__ == "RetriesExhausted":
                raise
            from orchestrator.scrub import scrub

            errors.append((op.describe(), scrub(str(exc))[:300]))
    unequal: tuple[str, ...] = ()
    if ops:
        after = read_plane(dst_caller)
        left = plan_plane(src, after, mode=mode, prune=prune, additive=additive)
        failed = {name for name, _ in errors}
        unequal = tuple(d for d in (op.describe() for op in left) if d not in failed)  # failures say why
    return PlaneReport(src.region, dst.region, tuple(ops), applied, tuple(errors), unequal, warnings)


def sync_plane(src_caller: Any, dst_caller: Any, **kwargs: Any) -> PlaneReport:
    return apply_plane(read_plane(src_caller), dst_caller, **kwargs)


# -- verify ----------------------------------------------------------------------------------------

def compare_plane(a: PlaneSnapshot, b: PlaneSnapshot, *, mode: RegionRewrite | None = None,
                  first: int = 5) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """(one `verify.KindDiff` per plane kind, notes): b against what a sync from a would leave in
    b. b's event configurations differ while a REQUIRED_EVENTS type is off there (a sync turns
    them on); the same in a is a note (a sync into a, or the console, turns them on)."""
    from orchestrator.registry.verify import KindDiff

    want = desired(a, b.region, mode or RegionRewrite.DESTINATION, b)
    out = []
    for kind in KINDS:
        have, w = b.kind(kind), want[kind]
        only_a = sorted(set(w) - set(have))
        only_b = sorted(set(have) - set(w))
        differ = sorted(n for n in set(w) & set(have) if _differs(kind, w[n], have[n]))
        names = [f"{kind} {n}: only in {a.region}" for n in only_a]
        names += [f"{kind} {n}: only in {b.region}" for n in only_b]
        if kind == "event_configurations":
            events = have.get("default") or {}
            off = [t for t in REQUIRED_EVENTS if not events.get(t)]
            names += [f"registry events off in {b.region}: {', '.join(off)}"] if off else \
                [f"event configurations differ from {a.region}"] if differ else []
        else:
            names += [f"{kind} {n}: differs" for n in differ]
        out.append(KindDiff(kind, len(a.kind(kind)), len(have), len(only_a), len(only_b), len(differ),
                            tuple(names[:first])))
    return tuple(out), _warnings(a)


def _differs(kind: str, want: Any, have: Any) -> bool:
    if kind == "event_configurations":
        return {t: v for t, v in have.items() if t in want} != want
    return bool(_comparable(kind, want) != _comparable(kind, have))


def merge_report(report: Any, plane: PlaneReport) -> Any:
    """A registry `SyncReport` or `SyncPlanSummary` with the plane's counts, errors and warnings in."""
    from dataclasses import replace

    from orchestrator.registry.sync.model import OpError, SyncPlanSummary

    counts = {k: dict(v) for k, v in report.counts.items()}
    counts.update(plane.counts())
    warnings = (*report.warnings, *plane.warnings)
    if isinstance(report, SyncPlanSummary):
        first = {k: tuple(v) for k, v in report.first.items()}
        for op in plane.ops:
            first[op.kind] = (*first.get(op.kind, ()), op.name)[:5]
        return replace(report, total=report.total + len(plane.ops), counts=counts, first=first, warnings=warnings)
    errors = (*report.errors, *(OpError(op, "PlaneApplyFailed", msg) for op, msg in plane.errors),
              *(OpError(op, "PlaneReadBackDiffers", "did not read back equal") for op in plane.unequal))
    return replace(report, planned=report.planned + len(plane.ops), applied=report.applied + plane.applied,
                   counts=counts, errors=errors, warnings=warnings)


__all__ = ["KINDS", "REQUIRED_EVENTS", "PlaneAction", "PlaneKind", "PlaneOp", "PlaneReport", "PlaneSnapshot",
           "apply_op", "apply_plane", "check_prune", "compare_plane", "desired", "dynamic_group_description",
           "indexing_description", "merge_report", "plan_plane", "read_plane", "sync_plane"]
