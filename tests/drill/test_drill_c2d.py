"""Cloud to device through a failover, as the devices measure it (orchestrator/drill/world/c2d.py): the
retained configuration a device finds when it subscribes in the survivor, and the QoS 1 commands
the cloud sent before the kill that reached it before, after, or never. One small local drill and
the device-side tallies it is read with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.drill.world.c2d import arrival_window, retained_on_arrival
from orchestrator.drill.world.outbox_world import count_commands
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


def test_outbox_commands_are_counted_once_before_after_duplicate_or_lost() -> None:
    # enqueued at these times; the kill at 10.0, a replication delay of 1 s
    issued = {"a": 2.0, "b": 3.0, "c": 9.5, "d": 9.8}
    received = [(4.0, "eu-west-1", "a"), (4.5, "eu-west-1", "a"),  # a repeat: dropped by commandId
                (16.0, "eu-central-1", "b"), (16.2, "eu-central-1", "b"),  # replayed in the survivor, twice
                (10.01, "eu-west-1", "c"),  # the dying broker's last delivery: still the killed region's
                (16.5, "eu-central-1", "x")]  # x: not enqueued before the kill
    count = count_commands(issued, received, 10.0, "eu-central-1", 1.0)
    assert (count.issued, count.delivered_before, count.delivered_after) == (4, 2, 1)
    assert (count.duplicates_dropped, count.lost, count.lost_within_replication) == (2, 1, 1)
    slow = count_commands({**issued, "d": 5.0}, received, 10.0, "eu-central-1", 1.0)
    assert (slow.lost, slow.lost_within_replication) == (1, 0)  # replicated, yet never delivered: not the delay


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
        # enqueued just before the kill: any the dying broker did not deliver and the survivor's replica
        # did not have is lost, and only those enqueued within the replication delay can be
        assert d["commands_lost_within_replication"] == d["commands_lost"], d
    summary = doc["summary"]
    assert summary["retained_found"] == 3 and summary["retained_current"] == 2
    assert summary["commands_issued"] == 9
    md = Path(doc["files"]["markdown"]).read_text()
    assert "delivered a retained message to **3/3** devices, the message eu-west-1 held to **2/3**" in md
    assert f"{changed}'s configuration changed in eu-west-1 after the last sync" in md
    lost = summary["commands_lost"]
    after = summary["commands_delivered_after"]
    assert f"QoS 1 commands the cloud sent through eu-west-1's command outbox just before the kill (enqueued, " \
           f"then published): 9; **{9 - lost - after}** reached their device before the kill, **{after}** after it " \
           f"failed over, **{lost} lost**" in md

    # the command outbox (outbox_world.py): two devices slept while the cloud queued 3 commands each in
    # eu-west-1, long enough before the kill for the global table to replicate them, and 1 more each just
    # before the kill; woken after the failover, they connect to eu-central-1, whose function replays
    # what its replica holds: the first 3, and the last one if it was enqueued more than the replication
    # delay before the kill (on a loaded machine sending takes a while); only one enqueued within the
    # delay may be lost
    outbox = doc["outbox"]
    delay = outbox["replication_delay_s"]
    assert delay == doc["scaled"]["replication_delay_s"] >= 0.25
    assert [s["thing"] for s in outbox["sleepers"]] == ["drill-sleeper-0000", "drill-sleeper-0001"]
    for s in outbox["sleepers"]:
        assert s["woke_in"] == "eu-central-1", s
        assert s["issued"] == 4 and s["delivered_after"] >= 3 and s["delivered_after"] + s["lost"] == 4, s
        assert s["lost"] == s["lost_within_replication"], s
    assert outbox["invocations"]["eu-central-1"] > 0 and outbox["errors"] == {"eu-west-1": [], "eu-central-1": []}
    slept_lost = sum(s["lost"] for s in outbox["sleepers"])
    assert outbox["held_at_kill"] >= slept_lost  # what eu-west-1 wrote and had not replicated when it died
    totals = summary["outbox"]
    assert totals["enqueued_before_kill"] == 9 + 8
    assert totals["delivered_after_in_survivor"] == after + 8 - slept_lost >= 6
    assert totals["lost"] == totals["lost_within_replication_delay"] == lost + slept_lost
    assert totals["function_errors"] == 0
    assert totals["duplicates_dropped"] == sum(s["duplicates_dropped"] for s in outbox["sleepers"]) + sum(
        d["commands_duplicates_dropped"] for d in doc["devices"])
    assert f"**{totals['enqueued_before_kill']}** commands enqueued in eu-west-1 before the kill" in md
    assert f"**{totals['delivered_after_in_survivor']}** delivered after it in eu-central-1, " \
           f"**{totals['duplicates_dropped']}** duplicates dropped by `commandId`, **{totals['lost']} lost**" in md
