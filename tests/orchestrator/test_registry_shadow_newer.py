"""Last writer wins, section by section, by the shadows' own metadata times (plan.newer_in_destination)."""

from __future__ import annotations

import json

from orchestrator.registry.snapshot import RegistrySnapshot, Shadow, Thing, shadow_from_document
from orchestrator.registry.sync.model import Kind
from orchestrator.registry.sync.plan import PlanPart, newer_in_destination, plan_sync

ON, OFF = '{"led":"on"}', '{"led":"off"}'
FW1, FW2 = '{"fw":"1.0"}', '{"fw":"2.0"}'


def _plan(src: Shadow, dst: Shadow):  # noqa: ANN202
    things = (Thing(src.thing),)
    return plan_sync(RegistrySnapshot("eu-west-1", things=things, shadows=(src,)),
                     RegistrySnapshot("eu-central-1", things=things, shadows=(dst,)), part=PlanPart.RELATIONS)


def test_the_newer_section_wins_on_each_side() -> None:
    src = Shadow("t", "", OFF, FW1, 4, desired_at=200, reported_at=100)
    dst = Shadow("t", "", ON, FW2, 9, desired_at=150, reported_at=300)
    want, kept = newer_in_destination(src, dst)
    assert kept and (want.desired, want.reported) == (OFF, FW2)
    plan = _plan(src, dst)
    assert plan.shadows_kept == 1
    (op,) = [op for op in plan.ops if op.kind is Kind.SHADOW]
    assert json.loads(op.params["document"]) == {"state": {"desired": {"led": "off"}}}


def test_a_destination_newer_in_every_section_costs_no_write() -> None:
    plan = _plan(Shadow("t", "", OFF, FW1, 4, 100, 100), Shadow("t", "", ON, FW2, 9, 101, 101))
    assert plan.shadows_kept == 1 and not plan.ops


def test_a_tie_or_missing_times_go_to_the_source() -> None:
    src = Shadow("t", "", OFF, FW1, 4, 100, 100)
    assert newer_in_destination(src, Shadow("t", "", ON, FW2, 9, 100, 100)) == (src, False)
    untimed = Shadow("t", "", OFF, FW1)  # a backup has no times
    assert newer_in_destination(untimed, Shadow("t", "", ON, FW2, 9, 500, 500)) == (untimed, False)
    assert newer_in_destination(src, Shadow("t", "", ON, FW2)) == (src, False)


def test_a_section_only_the_destination_has_is_kept_when_written_after_the_sources_last_write() -> None:
    src = Shadow("t", "", ON, None, 4, desired_at=100)
    assert newer_in_destination(src, Shadow("t", "", ON, FW2, 9, 100, 101))[0].reported == FW2
    assert newer_in_destination(src, Shadow("t", "", ON, FW2, 9, 100, 99)) == (src, False)


def test_a_section_only_the_source_has_is_copied_whatever_the_destinations_times() -> None:
    src = Shadow("t", "", ON, FW1, 4, 100, 100)
    dst = Shadow("t", "", ON, None, 9, desired_at=900)
    assert newer_in_destination(src, dst) == (src, False)
    (op,) = _plan(src, dst).ops
    assert json.loads(op.params["document"]) == {"state": {"reported": {"fw": "1.0"}}}


def test_section_times_are_the_newest_field_times_not_the_answers_timestamp() -> None:
    document = {"state": {"desired": {"led": "on", "cfg": {"a": 1, "b": [1, 2]}}, "reported": {"led": "on"}},
                "metadata": {"desired": {"led": {"timestamp": 100},
                                         "cfg": {"a": {"timestamp": 120},
                                                 "b": [{"timestamp": 90}, {"timestamp": 130}]}},
                             "reported": {"led": {"timestamp": 110}}},
                "timestamp": 999, "version": 7}
    sh = shadow_from_document("t", "", document)
    assert (sh.desired_at, sh.reported_at, sh.updated_at, sh.version) == (130, 110, 130, 7)
    assert shadow_from_document("t", "", {"state": {}, "timestamp": 999}).updated_at is None
