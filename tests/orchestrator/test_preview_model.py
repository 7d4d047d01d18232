"""Engine events -> preview model (`orchestrator.engine.events` into `orchestrator.preview.model`):
what reviewers are told will change, resource by resource."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
from pulumi.automation import events as ev

from orchestrator.engine.events import Collector, collect
from orchestrator.preview.model import (
    STATEFUL_TYPES,
    EnvironmentPreview,
    Op,
    Placeholder,
    PlaceholderReason,
    StackPreview,
    placeholders_in_config,
)

STACK = "dev-region-eu-west-1"
PARENT = "iotplatform:region:IotRegion"


def urn(type_: str, name: str, stack: str = STACK) -> str:
    return f"urn:pulumi:{stack}::iot-platform::{PARENT}${type_}::{name}"


def state(type_: str, name: str, *, protect: bool = False, inputs: dict[str, Any] | None = None,
          outputs: dict[str, Any] | None = None, stack: str = STACK) -> ev.StepEventStateMetadata:
    return ev.StepEventStateMetadata(type=type_, urn=urn(type_, name, stack), id=f"{name}-id", parent="",
                                     provider="", protect=protect, inputs=inputs, outputs=outputs)


def step(op: str, type_: str, name: str, *, diffs: list[str] | None = None,
         detailed: dict[str, str] | None = None, keys: list[str] | None = None,
         old: ev.StepEventStateMetadata | None = None, new: ev.StepEventStateMetadata | None = None,
         stack: str = STACK) -> ev.StepEventMetadata:
    return ev.StepEventMetadata(
        op=ev.OpType(op), urn=urn(type_, name, stack), type=type_, provider="", old=old, new=new,
        keys=keys, diffs=diffs,
        detailed_diff={k: ev.PropertyDiff(ev.DiffKind(v), True) for k, v in (detailed or {}).items()},
    )


class Events:
    """Builds the event stream a preview emits: pre and outputs events per step, then a summary."""

    def __init__(self) -> None:
        self.items: list[ev.EngineEvent] = []

    def _add(self, **kw: Any) -> None:
        self.items.append(ev.EngineEvent(sequence=len(self.items), timestamp=0, **kw))

    def step(self, meta: ev.StepEventMetadata, *, outputs: bool = True) -> Events:
        self._add(resource_pre_event=ev.ResourcePreEvent(meta, planning=True))
        if outputs:
            self._add(res_outputs_event=ev.ResOutputsEvent(meta, planning=True))
        return self

    def replace(self, type_: str, name: str, *, keys: list[str], protect: bool = False) -> Events:
        old = state(type_, name, protect=protect)
        new = state(type_, name, protect=protect)
        detailed = {k: "update-replace" for k in keys}
        for op in ("create-replacement", "replace", "delete-replaced"):
            self.step(step(op, type_, name, diffs=keys, detailed=detailed, keys=keys, old=old, new=new))
        return self

    def error(self, message: str) -> Events:
        self._add(diagnostic_event=ev.DiagnosticEvent(message=message, color="raw", severity="error"))
        return self

    def info(self, message: str) -> Events:
        self._add(diagnostic_event=ev.DiagnosticEvent(message=message, color="raw", severity="info"))
        return self

    def summary(self, changes: dict[str, int]) -> Events:
        self._add(summary_event=ev.SummaryEvent(False, 3, changes, {}))
        return self


def typical() -> Events:
    """A region stack preview: a stack, a create, an update with property diffs, a protected bucket
    replaced, a stream deleted, a DNS record repointed (with a secret), one resource unchanged."""
    e = Events()
    e.step(step("same", "pulumi:pulumi:Stack", "iot-platform-dev"))
    e.step(step("same", "aws:iot/policy:Policy", "devices"))
    e.step(step("create", "aws:iot/topicRule:TopicRule", "to-kinesis",
                new=state("aws:iot/topicRule:TopicRule", "to-kinesis", inputs={"sql": "SELECT *"})))
    e.step(step("update", "aws:iot/thingType:ThingType", "sensor", diffs=["tags", "properties"],
                detailed={"tags.team": "add", "properties.description": "update"},
                old=state("aws:iot/thingType:ThingType", "sensor"),
                new=state("aws:iot/thingType:ThingType", "sensor")))
    e.replace("aws:s3/bucket:Bucket", "lake", keys=["bucket"], protect=True)
    e.step(step("delete", "aws:kinesis/stream:Stream", "telemetry",
                old=state("aws:kinesis/stream:Stream", "telemetry", outputs={"name": "telemetry"})))
    rec = "aws:route53/record:Record"
    e.step(step("update", rec, "iot-primary", diffs=["records"], detailed={"records[0]": "update"},
                old=state(rec, "iot-primary", outputs={"records": ["abc-ats.iot.eu-west-1.amazonaws.com"],
                                                       "ttl": 60, "name": "iot.example.com"}),
                new=state(rec, "iot-primary", inputs={"records": ["[secret]"], "ttl": 60,
                                                      "name": "iot.example.com"})))
    return e


def test_collect_reports_each_changed_resource_once_with_its_operation() -> None:
    changes, counts, error = collect(typical().summary(
        {"same": 2, "create": 1, "update": 2, "replace": 1, "delete": 1,
         "create-replacement": 1, "delete-replaced": 1}).items)
    by_name = {c.name: c for c in changes}
    assert list(by_name) == ["to-kinesis", "sensor", "lake", "telemetry", "iot-primary"]  # engine order
    assert {n: c.op for n, c in by_name.items()} == {
        "to-kinesis": Op.CREATE, "sensor": Op.UPDATE, "lake": Op.REPLACE, "telemetry": Op.DELETE,
        "iot-primary": Op.UPDATE,
    }
    assert error is None
    # the replacement's sub-steps are not counted twice: the engine's summary is the truth
    assert counts == {Op.SAME: 2, Op.CREATE: 1, Op.UPDATE: 2, Op.REPLACE: 1, Op.DELETE: 1}


def test_property_diffs_protection_and_state_are_reported() -> None:
    changes, _, _ = collect(typical().items)
    by_name = {c.name: c for c in changes}
    assert by_name["sensor"].diffs == ("tags.team", "properties.description")
    assert not by_name["sensor"].protected
    lake = by_name["lake"]
    assert (lake.protected, lake.stateful, lake.replace_keys, lake.risky) == (True, True, ("bucket",), True)
    assert by_name["telemetry"].stateful and by_name["telemetry"].risky  # a stream delete loses data
    assert not by_name["to-kinesis"].stateful and not by_name["to-kinesis"].risky
    assert by_name["lake"].type == "aws:s3/bucket:Bucket"
    assert by_name["lake"].urn.endswith("aws:s3/bucket:Bucket::lake")


def test_dns_record_values_are_shown_and_secrets_stay_masked() -> None:
    changes, _, _ = collect(typical().items)
    record = next(c for c in changes if c.name == "iot-primary")
    assert [(v.path, v.old, v.new) for v in record.values] == [
        ("records", '["abc-ats.iot.eu-west-1.amazonaws.com"]', '["[secret]"]')]
    # values are only shown for DNS, never for other resources
    assert all(not c.values for c in changes if c.name != "iot-primary")


def test_secret_envelopes_and_unknowns_in_values_are_masked() -> None:
    rec = "aws:route53/record:Record"
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "hunter2-real"}
    e = Events().step(step("create", rec, "iot-latency", new=state(rec, "iot-latency", inputs={
        "records": [secret], "setIdentifier": "eu-central-1",
        "healthCheckId": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"})))
    (change,), _, _ = collect(e.items)
    values = {v.path: (v.old, v.new) for v in change.values}
    assert values == {"records": (None, '["[secret]"]'), "setIdentifier": (None, "eu-central-1"),
                      "healthCheckId": (None, "(known after up)")}
    assert "hunter2" not in repr(change)


def test_failed_preview_reports_the_error_without_colour_codes() -> None:
    e = typical().info("some info").error("<{%reset%}>aws:s3:Bucket lake: AccessDenied\x1b[0m\n")
    e.error("<{%reset%}>aws:s3:Bucket lake: AccessDenied\x1b[0m\n")  # repeated diagnostics collapse
    _, _, error = collect(e.items)
    assert error == "aws:s3:Bucket lake: AccessDenied"


def test_counts_without_a_summary_event_come_from_the_steps() -> None:
    changes, counts, _ = collect(typical().items)
    assert counts == {Op.SAME: 2, Op.CREATE: 1, Op.UPDATE: 2, Op.REPLACE: 1, Op.DELETE: 1}
    assert len(changes) == 5


def test_summary_counts_accept_op_enum_keys_as_well_as_strings() -> None:
    e = Events().summary({ev.OpType.SAME: 4, ev.OpType.UPDATE: 1})
    _, counts, _ = collect(e.items)
    assert counts == {Op.SAME: 4, Op.UPDATE: 1}


def test_delete_before_replace_order_still_folds_into_one_replace() -> None:
    e = Events()
    t = "aws:iot/certificate:Certificate"
    for op in ("delete-replaced", "replace", "create-replacement"):
        e.step(step(op, t, "device-ca", keys=["certificatePem"], old=state(t, "device-ca"),
                    new=state(t, "device-ca")))
    (change,), counts, _ = collect(e.items)
    assert (change.op, change.stateful, change.replace_keys) == (Op.REPLACE, True, ("certificatePem",))
    assert counts == {Op.REPLACE: 1}


def test_reads_are_counted_not_listed() -> None:
    e = Events().step(step("read", "aws:route53/zone:Zone", "zone"))
    e.step(step("same", "pulumi:pulumi:Stack", "s"))
    changes, counts, _ = collect(e.items)
    assert changes == ()
    sp = StackPreview("dev-dns", "dns", "eu-west-1", changes, counts)
    assert sp.unchanged == 2 and not sp.has_changes


def test_collector_is_safe_to_feed_from_several_threads() -> None:
    c = Collector()
    items = [step("create", "aws:iot/thing:Thing", f"t{i}") for i in range(400)]

    def feed(chunk: list[ev.StepEventMetadata]) -> None:
        for m in chunk:
            c(ev.EngineEvent(sequence=0, timestamp=0, resource_pre_event=ev.ResourcePreEvent(m)))

    threads = [threading.Thread(target=feed, args=(items[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    changes, counts, _ = c.result()
    assert len(changes) == 400 and counts == {Op.CREATE: 400}


def test_stateful_types_are_the_documented_list() -> None:
    for t in ("aws:s3/bucket:Bucket", "aws:kinesis/stream:Stream", "aws:dynamodb/table:Table",
              "aws:route53/record:Record", "aws:iot/certificate:Certificate", "aws:iot/thing:Thing"):
        assert t in STATEFUL_TYPES
    assert "aws:iot/topicRule:TopicRule" not in STATEFUL_TYPES


def test_stack_preview_accepts_string_counts_and_plain_placeholder_keys() -> None:
    sp = StackPreview("dev-dns", "dns", "eu-west-1", (), {"same": 3, "update": 1},
                      ("iot-platform:targets",))  # type: ignore[arg-type]
    assert sp.counts == {Op.SAME: 3, Op.UPDATE: 1}
    assert sp.placeholders == (Placeholder("iot-platform:targets"),)


def test_placeholders_found_in_wired_config_name_their_upstream() -> None:
    config = {
        "iot-platform:targets":
            '[{"region": "eu-west-1", "endpoint": "abc-ats.iot.eu-west-1.amazonaws.com"}, '
            '{"region": "eu-central-1", "endpoint": "placeholder:eu-central-1:iotEndpoint"}]',
        "iot-platform:domain": "iot.example.com",
    }
    (p,) = placeholders_in_config(config, "dev")
    assert p == Placeholder("iot-platform:targets", "dev-region-eu-central-1", "iotEndpoint",
                            PlaceholderReason.NOT_DEPLOYED)
    assert p.describe() == ("iotEndpoint of dev-region-eu-central-1 not deployed yet: placeholder used for "
                            "targets; `up` will use the real value")


def test_placeholder_prefix_matches_the_wiring_module() -> None:
    wiring = pytest.importorskip("orchestrator.stacks.wiring")
    from orchestrator.preview.model import PLACEHOLDER_PREFIX

    assert wiring.PLACEHOLDER_PREFIX == PLACEHOLDER_PREFIX
    outputs = wiring.placeholder_outputs("eu-central-1")
    assert placeholders_in_config({"k": outputs.endpoint}, "dev")[0].upstream == "dev-region-eu-central-1"


def test_topology_change_ignores_file_path_and_sizing() -> None:
    from orchestrator.topology import parse

    doc = {"domain": "iot.example.com", "hosted_zone": "example.com", "primary": "eu-west-1"}
    a = parse(doc, env="dev", source="a.yaml")
    b = parse({**doc, "sizing": {"default": {"kinesis_shards": 2}}}, env="dev", source="b.yaml")
    c = parse({**doc, "secondaries": ["eu-central-1"], "residency": ["eu-west-1", "eu-central-1"],
               "routing": "latency"}, env="dev")
    assert not EnvironmentPreview("dev", "x", (), a, b).topology_changed
    assert EnvironmentPreview("dev", "x", (), a, c).topology_changed
    assert not EnvironmentPreview("dev", "x", ()).topology_changed


def test_importing_the_preview_github_and_event_modules_does_not_import_pulumi() -> None:
    code = ("import sys, orchestrator.preview, orchestrator.github, orchestrator.scrub, orchestrator.engine.events; "
            "print([m for m in sys.modules if m == 'pulumi' or m.startswith('pulumi.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Trimmed from the event log of a real `pulumi preview` (CLI 3.272.0, a dynamic provider that
# reports no property diff): a protected resource replaced, one updated, one created, one
# deleted, and the engine refusing the protected replace.
def _meta(op: str, name: str, *, keys: list[str] | None = None, protect: bool | None = None,
          old: dict[str, Any] | None = None, new: dict[str, Any] | None = None) -> dict[str, Any]:
    t = "pulumi-python:dynamic:Resource"
    u = f"urn:pulumi:dev::pv::{t}::{name}"
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
              "ciphertext": "[secret]"}

    def st(inputs: dict[str, Any] | None) -> dict[str, Any] | None:
        if inputs is None:
            return None
        full = {"__provider": secret, **inputs}
        return {"type": t, "urn": u, "id": name, "parent": "", "provider": "", "protect": protect,
                "inputs": full, "outputs": full}

    return {"metadata": {"op": op, "urn": u, "type": t, "provider": "", "keys": keys, "diffs": None,
                         "detailedDiff": None, "old": st(old), "new": st(new)}, "planning": True}


RECORDED = [
    {"sequence": 0, "preludeEvent": {"config": {}}},
    {"sequence": 26, "diagnosticEvent": {
        "urn": "urn:pulumi:dev::pv::pulumi-python:dynamic:Resource::lake", "prefix": "error: ",
        "message": 'unable to replace resource "urn:pulumi:dev::pv::pulumi-python:dynamic:Resource::lake"\n'
                   "as it is currently marked for protection.\n", "color": "never", "severity": "error"}},
    {"sequence": 27, "resourcePreEvent": _meta(
        "create-replacement", "lake", keys=["name"], protect=True,
        old={"name": "lake-v1", "size": 1, "token": "[secret]"},
        new={"name": "lake-v2", "size": 1, "token": "[secret]"})},
    {"sequence": 30, "resourcePreEvent": _meta(
        "replace", "lake", keys=["name"], protect=True,
        old={"name": "lake-v1", "size": 1, "token": "[secret]"},
        new={"name": "lake-v2", "size": 1, "token": "[secret]"})},
    {"sequence": 32, "resourcePreEvent": _meta("update", "upd", old={"name": "upd", "size": 1},
                                               new={"name": "upd", "size": 2})},
    {"sequence": 33, "resourcePreEvent": _meta("create", "new")},
    {"sequence": 36, "resourcePreEvent": _meta("delete-replaced", "lake", protect=True,
                                               old={"name": "lake-v1", "size": 1})},
    {"sequence": 38, "resourcePreEvent": _meta("delete", "gone", old={"name": "gone", "size": 1})},
    {"sequence": 40, "diagnosticEvent": {"message": "preview failed\n", "color": "never", "severity": "error",
                                         "prefix": "error: "}},
    {"sequence": 41, "summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1,
                                      "resourceChanges": {"create": 1, "delete": 1, "replace": 1, "same": 2,
                                                          "update": 1}, "PolicyPacks": {}}},
]


def test_a_recorded_engine_event_log_becomes_the_model() -> None:
    changes, counts, error = collect(ev.EngineEvent.from_json(d) for d in RECORDED)
    by_name = {c.name: c for c in changes}
    assert {n: (c.op, c.diffs, c.protected) for n, c in by_name.items()} == {
        "lake": (Op.REPLACE, ("name",), True),  # the replace key is named even without a provider diff
        "upd": (Op.UPDATE, ("size",), False),  # the changed input, compared like the CLI's display does
        "new": (Op.CREATE, (), False),
        "gone": (Op.DELETE, (), False),
    }
    assert counts == {Op.CREATE: 1, Op.DELETE: 1, Op.REPLACE: 1, Op.SAME: 2, Op.UPDATE: 1}
    assert error is not None and error.startswith('unable to replace resource "urn:pulumi:dev::pv::')
    assert error.endswith("preview failed")
