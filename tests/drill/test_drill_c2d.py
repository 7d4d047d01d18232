"""Cloud to device through a failover, as the devices measure it (orchestrator/drill/c2d.py): the
retained configuration a device finds when it subscribes in the survivor, and the QoS 1 commands
the cloud sent before the kill that reached it before, after, or never. One small local drill and
the device-side tallies it is read with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.drill.c2d import arrival_window, commands_after, retained_on_arrival
from tests.doubles import project_copy

V1 = json.dumps({"version": 1}).encode()
V2 = json.dumps({"version": 2}).encode()


def test_arrival_is_the_first_connection_to_the_survivor_after_the_kill() -> None:
    connects = [(1.0, "eu-west-1"), (12.0, "eu-west-1"), (15.0, "eu-central-1"), (30.0, "eu-central-1")]
    assert arrival_window(connects, [11.0, 20.0], 10.0, "eu-central-1") == (15.0, 20.0)
    assert arrival_window(connects, [11.0], 10.0, "eu-central-1") == (15.0, float("inf"))
    assert arrival_window(connects[:2], [11.0], 10.0, "eu-central-1") is None  # never arrived


def test_retained_on_arrival_counts_only_what_subscribing_delivered() -> None:
    window = (15.0, 20.0)
    had = [(2.0, "eu-west-1", True, V1), (5.0, "eu-west-1", False, V2)]  # v2 arrived live before the kill
    # the survivor holds v1: found, but not the message the killed region held
    found = retained_on_arrival([*had, (15.1, "eu-central-1", True, V1)], window, 10.0)
    assert found is not None and found.found and not found.current
    same = retained_on_arrival([*had, (15.1, "eu-central-1", True, V2)], window, 10.0)
    assert same is not None and same.found and same.current
    # a live publish (no RETAIN) during the arrival connection, or one after it, is not "on arrival"
    live = retained_on_arrival([*had, (16.0, "eu-central-1", False, V2), (21.0, "eu-central-1", True, V2)],
                               window, 10.0)
    assert live is not None and not live.found and not live.current
    assert retained_on_arrival(had, None, 10.0) is None


def test_commands_are_counted_once_before_after_or_lost() -> None:
    issued = {"a", "b", "c", "d"}
    received = [(9.0, "eu-west-1", "a"), (9.5, "eu-west-1", "a"),  # a duplicate counts once
                (16.0, "eu-central-1", "b"), (16.5, "eu-central-1", "x")]  # x: not issued before the kill
    count = commands_after(issued, received, 10.0, (15.0, 20.0))
    assert (count.issued, count.delivered_before, count.delivered_after, count.lost) == (4, 1, 1, 2)
    never = commands_after(issued, received, 10.0, None)  # the device never reached the survivor
    assert (never.delivered_after, never.lost) == (0, 3)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_copy(tmp_path, monkeypatch)


def test_drill_reports_retained_configuration_and_commands_measured_by_the_devices(project: Path) -> None:
    from tests.drill.test_drill_local import _drill

    # without the transitions: what is measured here happens on arrival, before failover runs (whose
    # final sync races the devices' own shadow reports: test_drill_local covers the transitions)
    code, doc, err = _drill(project, "--devices", "3", "--routing", "failover", "--no-transitions")
    assert code == 0, err[-2000:]
    changed = doc["retained_changed_after_sync"]
    assert changed == "drill-device-0002"  # the last device: its configuration changed after the sync
    for d in doc["devices"]:
        assert d["moved"] and d["after"] == "eu-central-1", d
        # promote-secondary's registry sync carried every configuration: each is delivered on subscribe
        assert d["retained_found"] is True, d
        # ... and it is the one the primary held, except where the primary changed it after that sync
        assert d["retained_current"] is (d["thing"] != changed), d
        assert d["commands_issued"] == 3, d
        assert d["commands_delivered_before"] + d["commands_delivered_after"] + d["commands_lost"] == 3, d
        # nothing carries commands queued in the dead region: none arrives after the failover
        assert d["commands_delivered_after"] == 0, d
    summary = doc["summary"]
    assert summary["retained_found"] == 3 and summary["retained_current"] == 2
    assert summary["commands_issued"] == 9
    md = Path(doc["files"]["markdown"]).read_text()
    assert "delivered a retained message to **3/3** devices, the message eu-west-1 held to **2/3**" in md
    assert f"{changed}'s configuration changed in eu-west-1 after the last sync" in md
    lost = summary["commands_lost"]
    assert f"QoS 1 commands the cloud sent through eu-west-1 just before the kill (acknowledged by its broker): " \
           f"9; **{9 - lost}** reached their device before the kill, **0** after it failed over, **{lost} lost**" in md
