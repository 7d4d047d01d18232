"""Simulated devices on AWS's own device SDK (awscrt MQTT 5), unchanged across regions.

Each device holds its registered certificate, connects to the custom domain (SNI and server
verification on that name) through its own resolver (`DeviceNetwork`), publishes telemetry at QoS 1
with sequence numbers, keeps its classic shadow (get on every connection, report its state,
follow `desired`) and reconnects with the SDK's own backoff. QoS 1 publishes made while offline
wait in the SDK's offline queue (FAIL_QOS0_PUBLISH_ON_DISCONNECT) and go out after reconnecting.
On every connection it also subscribes to its retained configuration topic and its command topic
(c2d.py) and logs what arrives there: when, from which region, with the RETAIN flag or not. It keeps
the command outbox's device contract (docs/devices.md, "Commands that survive a failover"): once
subscribed it asks for what is still pending (`{"commandIds": [], "replay": true}` on
`cmd/ack/<thing>`), it executes a command once (a repeat, by `commandId`, is dropped) and
acknowledges every command it receives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.drill.model import SDK_MAX_RECONNECT_S, SDK_MIN_RECONNECT_S
from orchestrator.drill.world.c2d import ack_topic, command_topic, config_topic
from orchestrator.drill.world.pki import KeyPair

REPORT_EVERY = 4  # a shadow report every 4th telemetry message


@dataclass
class DeviceLog:
    attempts: list[float] = field(default_factory=list)
    connects: list[tuple[float, str]] = field(default_factory=list)  # (time, region)
    disconnects: list[float] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    published: dict[int, float] = field(default_factory=dict)
    acked: dict[int, float] = field(default_factory=dict)
    acked_in: dict[int, str | None] = field(default_factory=dict)  # seq -> region connected to at its PUBACK
    arrivals: list[tuple[float, str, bool, bool]] = field(default_factory=list)  # (t, region, reported, desired)
    last_report_accepted: int | None = None
    desired: dict[str, Any] = field(default_factory=dict)
    # cloud to device (c2d.py): its configuration topic (t, region, RETAIN flag, payload), commands (t, region, id)
    config: list[tuple[float, str | None, bool, bytes]] = field(default_factory=list)
    commands: list[tuple[float, str | None, str]] = field(default_factory=list)  # every receipt, repeats too
    executed: dict[str, float] = field(default_factory=dict)  # commandId -> when it was executed (once)


class Device:
    def __init__(self, thing: str, keypair: KeyPair, location: str, ca_pem: str, domain: str, port: int,
                 proxy: tuple[str, int], region_of: Callable[[str], str | None]) -> None:
        self.thing, self.keypair, self.location = thing, keypair, location
        self.ca_pem, self.domain, self.port, self.proxy = ca_pem, domain, port, proxy
        self.region_of = region_of  # device -> region of the address its tunnel reached
        self.log = DeviceLog()
        self.region: str | None = None  # where it is connected now
        self.seq = 0
        self._lock = threading.Lock()
        self._pending_get = False
        self._client: Any = None
        self.stopped = threading.Event()

    def start(self) -> None:
        from awscrt import http, io, mqtt5

        tls = io.TlsContextOptions.create_client_with_mtls(self.keypair.cert_pem.encode(),
                                                           self.keypair.key_pem.encode())
        tls.override_default_trust_store(self.ca_pem.encode())
        tls.min_tls_ver = io.TlsVersion.TLSv1_2
        self._client = mqtt5.Client(mqtt5.ClientOptions(
            host_name=self.domain, port=self.port, tls_ctx=io.ClientTlsContext(tls),
            http_proxy_options=http.HttpProxyOptions(
                self.proxy[0], self.proxy[1], auth_type=http.HttpProxyAuthenticationType.Basic,
                auth_username=self.thing, auth_password="device",
                connection_type=http.HttpProxyConnectionType.Tunneling),
            connect_options=mqtt5.ConnectPacket(client_id=self.thing, keep_alive_interval_sec=30),
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_QOS0_PUBLISH_ON_DISCONNECT,
            retry_jitter_mode=mqtt5.ExponentialBackoffJitterMode.FULL,
            min_reconnect_delay_ms=int(SDK_MIN_RECONNECT_S * 1000),
            max_reconnect_delay_ms=int(SDK_MAX_RECONNECT_S * 1000),
            connack_timeout_ms=5000,
            on_publish_callback_fn=self._on_publish,
            on_lifecycle_event_attempting_connect_fn=lambda _: self.log.attempts.append(time.time()),
            on_lifecycle_event_connection_success_fn=lambda _: self._on_connected(),
            on_lifecycle_event_connection_failure_fn=lambda _: self.log.failures.append(time.time()),
            on_lifecycle_event_disconnection_fn=lambda _: self._on_disconnected(),
            on_lifecycle_event_stopped_fn=lambda _: self.stopped.set()))
        self._client.start()

    # -- lifecycle callbacks (CRT threads: never block here) -------------------------------------------
    def _on_connected(self) -> None:
        from awscrt import mqtt5

        region = self.region_of(self.thing) or "?"
        with self._lock:
            self.region = region
            self.log.connects.append((time.time(), region))
            self._pending_get = True
        base = f"$aws/things/{self.thing}/shadow"
        topics = [f"{base}/get/accepted", f"{base}/get/rejected", f"{base}/update/accepted", f"{base}/update/delta",
                  config_topic(self.thing), command_topic(self.thing)]  # resubscribed on every connection
        subscribed = self._client.subscribe(mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(t, mqtt5.QoS.AT_LEAST_ONCE) for t in topics]))
        # subscribed: what the outbox still holds for it now has somewhere to go (rule 5 of the contract)
        subscribed.add_done_callback(lambda f: None if f.exception() else self._publish(
            ack_topic(self.thing), {"commandIds": [], "replay": True}))
        self._publish(f"{base}/get", {"clientToken": f"{self.thing}-get-{time.time_ns()}"})

    def _on_disconnected(self) -> None:
        with self._lock:
            self.region = None
            self.log.disconnects.append(time.time())

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        topic: str = packet.topic
        if topic == config_topic(self.thing):
            with self._lock:
                self.log.config.append((time.time(), self.region, bool(packet.retain), bytes(packet.payload or b"")))
            return
        try:
            body = json.loads(bytes(packet.payload or b"{}"))
        except ValueError:
            return
        if topic == command_topic(self.thing):
            if isinstance(body, dict) and isinstance(body.get("commandId"), str):
                command_id = body["commandId"]
                with self._lock:
                    self.log.commands.append((time.time(), self.region, command_id))
                    self.log.executed.setdefault(command_id, time.time())  # a repeat is not executed again
                self._publish(ack_topic(self.thing), {"commandIds": [command_id]})
            return
        if topic.endswith("/get/accepted") or topic.endswith("/get/rejected"):
            state = body.get("state", {}) if topic.endswith("accepted") else {}
            reported, desired = state.get("reported") or {}, state.get("desired") or {}
            with self._lock:
                first = self._pending_get
                self._pending_get = False
                if first and self.log.connects:
                    last = self.log.last_report_accepted
                    known = self.log.desired
                    self.log.arrivals.append((time.time(), self.log.connects[-1][1],
                                              last is None or reported.get("seq") == last,
                                              not known or all(desired.get(k) == v for k, v in known.items())))
                if desired and not self.log.desired:
                    self.log.desired = dict(desired)
            self.report()
        elif topic.endswith("/update/delta"):
            with self._lock:
                self.log.desired.update(body.get("state") or {})
            self.report()
        elif topic.endswith("/update/accepted"):
            seq = (body.get("state", {}).get("reported") or {}).get("seq")
            if isinstance(seq, int):
                with self._lock:
                    if self.log.last_report_accepted is None or seq > self.log.last_report_accepted:
                        self.log.last_report_accepted = seq

    # -- what the device does ---------------------------------------------------------------------------
    def _publish(self, topic: str, body: dict[str, Any]) -> Any:
        from awscrt import mqtt5

        if self._client is None:  # asleep (stopped): nothing goes out
            return None
        return self._client.publish(mqtt5.PublishPacket(topic=topic, payload=json.dumps(body).encode(),
                                                        qos=mqtt5.QoS.AT_LEAST_ONCE))

    def report(self) -> None:
        with self._lock:
            reported = {"seq": self.seq, **self.log.desired}
        self._publish(f"$aws/things/{self.thing}/shadow/update",
                      {"state": {"reported": reported}, "clientToken": f"{self.thing}-r{self.seq}"})

    def tick(self) -> None:
        """One telemetry message (QoS 1); every REPORT_EVERY-th also reports the shadow."""
        with self._lock:
            self.seq += 1
            seq = self.seq
            self.log.published[seq] = time.time()
        future = self._publish(f"dt/{self.thing}/telemetry", {"seq": seq, "t": time.time()})
        future.add_done_callback(lambda f, s=seq: self._acked(f, s))
        if seq % REPORT_EVERY == 0 and self.region is not None:
            self.report()

    def _acked(self, future: Any, seq: int) -> None:
        if future.exception() is None:
            self.log.acked[seq] = time.time()
            self.log.acked_in[seq] = self.region

    def stop(self, timeout: float = 5.0) -> None:
        if self._client is not None:
            self._client.stop()
            self.stopped.wait(timeout)
            self._client = None


class Fleet:
    def __init__(self, devices: list[Device], publish_interval: float) -> None:
        self.devices = devices
        self.publish_interval = publish_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.publishing = threading.Event()

    def start(self) -> None:
        for d in self.devices:
            d.start()
        self._thread = threading.Thread(target=self._ticker, name="drill-fleet", daemon=True)
        self._thread.start()

    def _ticker(self) -> None:
        while not self._stop.wait(self.publish_interval):
            if not self.publishing.is_set():
                continue
            for d in self.devices:
                d.tick()

    def connected(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.devices:
            if d.region:
                out[d.region] = out.get(d.region, 0) + 1
        return out

    def stop_publishing(self) -> None:
        self.publishing.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for d in self.devices:
            d.stop()
