"""Cloud to device in the local world: each region's retained messages as its broker serves them, the
cloud's QoS 1 commands, and what the devices measured of both through a failover.

- `RetainedMirror`: IoT Core delivers to a subscriber the retained message its Region holds (the one
  ListRetainedMessages / GetRetainedMessage show). The local brokers are mosquitto, whose retained
  store is its own, so each region's mirror makes its broker hold what that region's `iot-data` plane
  in moto holds under the drill's prefix (`retained_plane.py`): a new or changed message is published
  to the broker with retain=true, a topic moto no longer retains is cleared with an empty retained
  publish. It follows moto every `period` seconds and starts over when its broker restarts (a killed
  broker comes back empty, as a broker without persistence does). What a region holds is therefore
  what the product put there: the devices' configuration published through the Publish API in the
  primary, carried to the secondary by `registry sync` (or not).
- The cloud's QoS 1 commands go through the command outbox (`outbox_world.py`: `outbox.enqueue` in
  the region, then the publish through its broker; each region's outbox function replays what its
  replica of the global table holds when a device connects there).
- `retained_on_arrival` and `commands_after`: the device's own log (fleet.py) read back. Nothing is
  computed from what the world was told to do; only from what each device received, when and where.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.registry import outbox

CONFIG_PREFIX = "drill/config/"  # the devices' retained configuration: drill/config/<thing>
COMMAND_PREFIX = outbox.COMMAND_PREFIX  # cloud-to-device commands: cmd/<thing>, where the outbox publishes
COMMANDS_PER_DEVICE = 3  # QoS 1 commands the cloud sends each device on the killed region just before the kill


def config_topic(thing: str) -> str:
    return f"{CONFIG_PREFIX}{thing}"


def command_topic(thing: str) -> str:
    return f"{COMMAND_PREFIX}{thing}"


def ack_topic(thing: str) -> str:
    """Where the device acknowledges its commands (docs/devices.md: `cmd/ack/<thing>`)."""
    return f"{outbox.ACK_PREFIX}{thing}"


class _ServiceClient:
    """An MQTT 5 client on a broker's plain service listener (the region's own side, not a device)."""

    def __init__(self, client_id: str, address: str, port: int,
                 on_connected: Callable[[], None] | None = None) -> None:
        self.client_id, self.address, self.port = client_id, address, port
        self.on_connected = on_connected
        self.connected = threading.Event()
        self._client: Any = None

    def start(self, timeout: float = 10.0) -> None:
        from awscrt import mqtt5

        def success(_: Any) -> None:
            self.connected.set()
            if self.on_connected is not None:
                self.on_connected()

        self._client = mqtt5.Client(mqtt5.ClientOptions(
            host_name=self.address, port=self.port,
            connect_options=mqtt5.ConnectPacket(client_id=self.client_id, keep_alive_interval_sec=30),
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            min_reconnect_delay_ms=200, max_reconnect_delay_ms=1000,
            on_lifecycle_event_connection_success_fn=success,
            on_lifecycle_event_disconnection_fn=lambda _: self.connected.clear()))
        self._client.start()
        if not self.connected.wait(timeout):
            raise RuntimeError(f"{self.client_id} could not connect to {self.address}:{self.port}")

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> Any:
        from awscrt import mqtt5

        return self._client.publish(mqtt5.PublishPacket(
            topic=topic, payload=payload, retain=retain,
            qos=mqtt5.QoS.AT_LEAST_ONCE if qos else mqtt5.QoS.AT_MOST_ONCE))

    def stop(self) -> None:
        retire(self._client)
        self._client = None


_RETIRED: list[Any] = []  # stopped CRT clients, kept alive for the process (see `retire`)


def retire(mqtt_client: Any) -> None:
    """Stop an awscrt MQTT 5 client and keep a reference to it. Dropping the last reference while the
    client is still stopping releases it under the CRT's event-loop thread, which crashed the drill's
    process (SIGSEGV in a native thread at the end of a drill, with several service clients stopping
    one after another); a stopped client costs a few KB, and a drill process makes a handful."""
    if mqtt_client is None:
        return
    try:
        mqtt_client.stop()
    except Exception:  # noqa: BLE001 - already stopped
        pass
    _RETIRED.append(mqtt_client)


class RetainedMirror:
    """Makes a region's broker hold the retained messages its `iot-data` plane holds under `prefix`."""

    def __init__(self, region: str, address: str, port: int, data: Any, prefix: str = CONFIG_PREFIX,
                 period: float = 0.5) -> None:
        self.region, self.data, self.prefix, self.period = region, data, prefix, period
        self.served: dict[str, int] = {}  # topic -> lastModifiedTime of the message the broker holds
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mqtt = _ServiceClient(f"iot-retained-{region}", address, port, on_connected=self._restarted)

    def _restarted(self) -> None:  # a (re)started broker holds nothing: serve everything again
        with self._lock:
            self.served.clear()

    def start(self) -> None:
        self._mqtt.start()
        self.follow()
        self._thread = threading.Thread(target=self._run, name=f"drill-retained-{self.region}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            if not self._mqtt.connected.is_set():
                continue
            try:
                self.follow()
            except Exception as exc:  # noqa: BLE001 - the next round retries; the drill goes on
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])

    def held(self) -> dict[str, tuple[int, int]]:
        """topic -> (lastModifiedTime, qos) of every retained message the region holds under the prefix."""
        out: dict[str, tuple[int, int]] = {}
        kwargs: dict[str, Any] = {"maxResults": 200}
        while True:
            page = self.data.list_retained_messages(**kwargs)
            for row in page.get("retainedTopics", []):
                if row["topic"].startswith(self.prefix):
                    out[row["topic"]] = (int(row["lastModifiedTime"]), int(row.get("qos", 0)))
            if not page.get("nextToken"):
                return out
            kwargs["nextToken"] = page["nextToken"]

    def follow(self) -> int:
        """One pass: publish what changed, clear what went; returns how many topics it wrote."""
        held = self.held()
        with self._lock:
            served = dict(self.served)
        wrote = 0
        for topic, (modified, qos) in sorted(held.items()):
            if served.get(topic) == modified:
                continue
            payload = self.data.get_retained_message(topic=topic)["payload"]
            self._mqtt.publish(topic, bytes(payload), qos, retain=True).result(10)
            with self._lock:
                self.served[topic] = modified
            wrote += 1
        for topic in set(served) - set(held):
            self._mqtt.publish(topic, b"", 1, retain=True).result(10)
            with self._lock:
                self.served.pop(topic, None)
            wrote += 1
        return wrote

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._mqtt.stop()


@dataclass(frozen=True)
class RetainedArrival:
    found: bool  # the survivor delivered a retained message on the configuration topic on subscribe
    current: bool  # ... and it is the message the device last had from the killed region


def arrival_window(connects: list[tuple[float, str]], disconnects: list[float], killed_at: float,
                   survivor: str) -> tuple[float, float] | None:
    """(start, end) of the device's first connection to `survivor` after the kill; None: it never arrived."""
    start = next((t for t, r in connects if t > killed_at and r == survivor), None)
    if start is None:
        return None
    end = next((t for t in disconnects if t > start), float("inf"))
    return start, end


def retained_on_arrival(config: list[tuple[float, str | None, bool, bytes]], window: tuple[float, float] | None,
                        killed_at: float) -> RetainedArrival | None:
    """What the device's configuration topic delivered when it subscribed in the survivor.

    `config`: every message the device received on its configuration topic (time, region, the
    RETAIN flag, payload). Messages sent because of a subscription carry RETAIN (MQTT 5 3.3.1.3);
    a retained message published while the device listens arrives without it, and counts only as
    what the device had before the kill."""
    if window is None:
        return None
    start, end = window
    had = [p for t, _r, _retain, p in config if t < killed_at]
    got = [p for t, _r, retain, p in config if start <= t < end and retain]
    return RetainedArrival(found=bool(got), current=bool(got) and bool(had) and got[0] == had[-1])
