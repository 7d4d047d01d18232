"""Landed, not just acknowledged: messages counted against the region that acknowledged them."""

from __future__ import annotations

from orchestrator.drill.landed import Landing, tally


def test_messages_are_counted_against_the_region_that_acknowledged_them() -> None:
    published = {1, 2, 3, 4, 5, 6}
    acked_in = {1: "eu-west-1", 2: "eu-west-1", 3: "eu-west-1", 5: "eu-central-1", 6: None}
    landed_in = {1: {"eu-west-1"},  # acked and landed there
                 2: {"eu-central-1"},  # acked by the dying broker, sent again, landed in the survivor
                 # 3: acked by the dying broker, in no lake: lost after the acknowledgement
                 4: {"eu-central-1"},  # never acknowledged (connection died), the offline queue resent it
                 5: {"eu-central-1", "eu-west-1"}}
    # 6 was acknowledged while the device's connection was already gone (no region known): it counts as
    # acknowledged and, landing nowhere, as lost after the acknowledgement
    assert tally(published, acked_in, landed_in) == Landing(
        acknowledged=5, landed_where_acked=2, landed_elsewhere=1, acked_never_landed=2, unacked_landed=1,
        never_landed=2)


def test_nothing_lost_when_every_acknowledged_message_landed_where_acked() -> None:
    r = tally({1, 2}, {1: "a", 2: "a"}, {1: {"a"}, 2: {"a"}})
    assert r.landed_where_acked == 2 and r.acked_never_landed == 0 and r.never_landed == 0
