"""A failover's final sync races devices that already reconnected in the survivor (moto server).

The old region still answers, so the sync copies its shadows into the survivor while devices
report to their shadows there. Last writer wins by the shadows' own metadata times: a section the
destination wrote after the source did is kept (and counted); one the source wrote later is
copied; a write of ours that a device changed again before the read-back is superseded, not a
failure. Shadow times are whole seconds (IoT and moto alike): the tests wait a little over a
second between the writes they order. moto stamps every field's metadata with the time of the
shadow's last update (IoT keeps each field's own time), so here a device's report makes the whole
destination shadow newer; the section-by-section rule is tested with IoT's times in
tests/orchestrator/test_registry_shadow_newer.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.registry import SyncOptions, plan_clients_sync, sync_clients
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import seed, thing_name
from tests.ops.test_ops_registry_shadows import put, shadows, sync

IotFactory = Callable[[str], Any]
TICK_S = 1.1  # past the next whole second of the shadows' metadata times


@pytest.fixture
def data(ctx: AwsContext) -> Callable[[str], Any]:
    """data(region): an iot-data (Device Shadow) client on the moto server."""
    return lambda region: client(ctx, "iot-data", region, own_retries=True, max_pool_connections=16)


def _state(data_client: Any, thing: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    desired, reported = shadows(data_client, [thing])[f"{thing}/$classic"]
    return (json.loads(desired) if desired else None, json.loads(reported) if reported else None)


def _both_regions_in_step(iot: IotFactory, data: Callable[[str], Any], n: int) -> list[str]:
    seed(iot(SRC), n)
    things = [thing_name(i) for i in range(n)]
    for thing in things:
        put(data(SRC), thing, {"desired": {"led": "on"}, "reported": {"led": "on", "fw": "1.0"}})
    first = sync(iot(SRC), iot(DST), data(SRC), data(DST))
    assert first.ok, (first.errors, first.verification)
    return things


def test_a_shadow_the_destination_wrote_later_is_kept_and_an_older_one_is_still_fixed(
        iot: IotFactory, data: Callable[[str], Any]) -> None:
    things = _both_regions_in_step(iot, data, 2)
    reconnected, stale = things
    # the old region's last writes, before it was killed
    put(data(SRC), reconnected, {"reported": {"fw": "1.1"}, "desired": {"led": "blink"}})
    put(data(SRC), stale, {"desired": {"led": "off"}})
    time.sleep(TICK_S)
    # a device that already reconnected in the survivor reports there
    put(data(DST), reconnected, {"reported": {"fw": "2.0", "boot": 7}})

    summary = plan_clients_sync(iot(SRC), iot(DST), SyncOptions(rate=10_000.0), src_data=data(SRC),
                                dst_data=data(DST))
    assert summary.shadows_kept == 1 and summary.counts["shadow"]["update"] == 1
    assert summary.to_json()["shadows_kept"] == 1

    report = sync(iot(SRC), iot(DST), data(SRC), data(DST))
    assert report.ok, (report.errors, report.verification)
    assert report.shadows_kept == 1 and report.to_json()["shadows_kept"] == 1
    assert report.counts["shadow"]["update"] == 1  # only `stale`
    # the device's newer state stands; nothing of the old region's older writes came back
    assert _state(data(DST), reconnected) == ({"led": "on"}, {"led": "on", "fw": "2.0", "boot": 7})
    # a destination older than the source's last write is still made equal
    assert _state(data(DST), stale) == _state(data(SRC), stale) == ({"led": "off"}, {"led": "on", "fw": "1.0"})


def test_a_destination_that_drifted_before_the_sources_last_write_is_overwritten(
        iot: IotFactory, data: Callable[[str], Any]) -> None:
    (thing,) = _both_regions_in_step(iot, data, 1)
    put(data(DST), thing, {"reported": {"fw": "9.9"}, "desired": {"led": "off"}})  # drift, then
    time.sleep(TICK_S)
    put(data(SRC), thing, {"reported": {"fw": "1.2"}, "desired": {"led": "on"}})  # the source's newer write

    report = sync(iot(SRC), iot(DST), data(SRC), data(DST))
    assert report.ok, (report.errors, report.verification)
    assert report.shadows_kept == 0
    assert _state(data(DST), thing) == _state(data(SRC), thing) == ({"led": "on"}, {"led": "on", "fw": "1.2"})


class _DeviceAfterSync:
    """The destination's iot-data client, with a device that reports to the shadow right after
    each of the sync's writes to it (before the read-back), through its own client."""

    def __init__(self, real: Any, device: Any) -> None:
        self._real, self._device = real, device
        self.reports = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def update_thing_shadow(self, **kwargs: Any) -> Any:
        answer = self._real.update_thing_shadow(**kwargs)
        self.reports += 1
        put(self._device, kwargs["thingName"], {"reported": {"fw": "3.0", "seq": self.reports}})
        return answer


def test_a_write_a_device_superseded_before_the_read_back_is_not_a_failure(
        iot: IotFactory, data: Callable[[str], Any]) -> None:
    (thing,) = _both_regions_in_step(iot, data, 1)
    put(data(SRC), thing, {"reported": {"fw": "1.1"}})
    dst = _DeviceAfterSync(data(DST), data(DST))

    report = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000.0), src_data=data(SRC), dst_data=dst)
    assert dst.reports == 1 and report.counts["shadow"]["update"] == 1
    assert report.verification is not None and report.verification.superseded == 1
    assert report.ok, (report.errors, report.verification)
    assert report.verification.to_json()["superseded"] == 1
    # the device's state, written after ours, is what the survivor holds
    assert _state(data(DST), thing) == ({"led": "on"}, {"led": "on", "fw": "3.0", "seq": 1})


class _LostWrite:
    """A destination that answers the sync's shadow write with a version but does not keep it."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def update_thing_shadow(self, **kwargs: Any) -> Any:
        import io

        body = json.dumps({"version": 10_000, "timestamp": int(time.time()), "state": {}}).encode()
        return {"payload": io.BytesIO(body)}


def test_a_write_that_did_not_take_is_still_a_failure(iot: IotFactory, data: Callable[[str], Any]) -> None:
    (thing,) = _both_regions_in_step(iot, data, 1)
    put(data(SRC), thing, {"reported": {"fw": "1.1"}})

    report = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000.0), src_data=data(SRC),
                          dst_data=_LostWrite(data(DST)))
    assert report.verification is not None
    assert report.verification.superseded == 0 and report.verification.counts == {"shadow": 1}
    assert not report.ok


class _SourceChangesBeforeOurWrite:
    """The destination's iot-data client; before the sync's first shadow write reaches it, the
    device (still on the source) reports there, and a second passes: the source's change is
    older than our write, yet newer than what the sync read."""

    def __init__(self, real: Any, src: Any) -> None:
        self._real, self._src = real, src
        self.changed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def update_thing_shadow(self, **kwargs: Any) -> Any:
        if not self.changed:
            self.changed.append(kwargs["thingName"])
            put(self._src, kwargs["thingName"], {"reported": {"fw": "1.5"}})
            time.sleep(TICK_S)
        return self._real.update_thing_shadow(**kwargs)


def test_a_source_change_between_the_syncs_read_and_its_write_is_carried_by_the_next_sync(
        iot: IotFactory, data: Callable[[str], Any], tmp_path: Path) -> None:
    state = tmp_path / "versions.json"
    seed(iot(SRC), 1)
    thing = thing_name(0)
    put(data(SRC), thing, {"desired": {"led": "on"}, "reported": {"fw": "1.0"}})
    dst = _SourceChangesBeforeOurWrite(data(DST), data(SRC))

    first = sync_clients(iot(SRC), iot(DST), SyncOptions(rate=10_000.0, state_path=state), src_data=data(SRC),
                         dst_data=dst)
    assert first.ok and dst.changed == [thing], (first.errors, first.verification)
    assert _state(data(DST), thing) == ({"led": "on"}, {"fw": "1.0"})  # what the run read
    assert json.loads(state.read_text())["written_shadows"] == {f"{thing}/$classic": 1}

    # our own write is newer than the source's change by its time, but nobody else wrote it since
    second = sync(iot(SRC), iot(DST), data(SRC), data(DST), state_path=state)
    assert second.ok and second.shadows_kept == 0, (second.errors, second.verification)
    assert second.counts["shadow"]["update"] == 1
    assert _state(data(DST), thing) == _state(data(SRC), thing) == ({"led": "on"}, {"fw": "1.5"})
