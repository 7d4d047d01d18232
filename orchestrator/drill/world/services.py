"""A region's own services on its broker: the Device Shadow service and the telemetry sink.

A local broker has no shadow service, so `RegionServices` emulates it on the
`$aws/things/<thing>/shadow/...` topics (get, update: accepted, rejected, delta), backed by that
region's IoT data plane in moto (`GetThingShadow`, `UpdateThingShadow`): a shadow exists in a
region only if something wrote it there, exactly as in IoT Core, where shadows are not replicated.
The sink subscribes to the telemetry topic at QoS 1 and records every message it receives (it
stands in for the IoT rule that feeds the stream), so the report counts what reached a region.

It connects to the broker's service listener (plain MQTT on the region's own address).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.aws import AwsContext, client

TELEMETRY = "dt/+/telemetry"
SHADOW_REQUESTS = ("$aws/things/+/shadow/get", "$aws/things/+/shadow/update")
WORKERS = 4  # shadow requests served in parallel per region (each is one or two data-plane calls)


@dataclass(frozen=True)
class Reception:
    at: float
    region: str
    thing: str
    seq: int


class RegionServices:
    def __init__(self, region: str, address: str, port: int, aws: AwsContext) -> None:
        self.region, self.address, self.port = region, address, port
        self.data = client(aws, "iot-data", region)
        self.received: list[Reception] = []
        self.shadow_calls = 0
        self._requests: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._connected = threading.Event()
        self._client: Any = None
        self._workers: list[threading.Thread] = []

    def start(self, timeout: float = 10.0) -> None:
        from awscrt import mqtt5

        for i in range(WORKERS):
            worker = threading.Thread(target=self._serve, name=f"drill-shadow-{self.region}-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        self._client = mqtt5.Client(mqtt5.ClientOptions(
            host_name=self.address, port=self.port,
            connect_options=mqtt5.ConnectPacket(client_id=f"iot-services-{self.region}", keep_alive_interval_sec=30),
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            min_reconnect_delay_ms=200, max_reconnect_delay_ms=1000,
            on_publish_callback_fn=self._on_publish,
            on_lifecycle_event_connection_success_fn=lambda _: self._on_connected()))
        self._client.start()
        if not self._connected.wait(timeout):
            raise RuntimeError(f"the {self.region} services could not connect to {self.address}:{self.port}")

    def _on_connected(self) -> None:
        from awscrt import mqtt5

        subs = [mqtt5.Subscription(t, mqtt5.QoS.AT_LEAST_ONCE) for t in (TELEMETRY, *SHADOW_REQUESTS)]
        future = self._client.subscribe(mqtt5.SubscribePacket(subscriptions=subs))
        future.add_done_callback(lambda _: self._connected.set())

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        topic = packet.topic
        if topic.startswith("dt/"):
            try:
                seq = int(json.loads(bytes(packet.payload))["seq"])
            except (ValueError, KeyError, TypeError):
                return
            self.received.append(Reception(time.time(), self.region, topic.split("/")[1], seq))
        else:
            self._requests.put((topic, bytes(packet.payload or b"")))

    def _serve(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            try:
                self._shadow(*item)
            except Exception:  # noqa: BLE001 - one bad request must not stop the region's shadow service
                continue

    def _shadow(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")  # $aws things <thing> shadow <op>
        thing, op = parts[2], parts[4]
        base = f"$aws/things/{thing}/shadow/{op}"
        token = _token(payload)
        self.shadow_calls += 1
        if op == "get":
            try:
                doc = json.loads(self.data.get_thing_shadow(thingName=thing)["payload"].read())
            except self.data.exceptions.ResourceNotFoundException:
                self._publish(f"{base}/rejected", {"code": 404, "message": f"No shadow exists with name: '{thing}'",
                                                    **token})
                return
            self._publish(f"{base}/accepted", {**doc, **token})
            return
        try:
            doc = json.loads(self.data.update_thing_shadow(thingName=thing, payload=payload)["payload"].read())
        except Exception as exc:  # noqa: BLE001 - answered to the device as IoT does
            self._publish(f"{base}/rejected", {"code": 400, "message": str(exc)[:200], **token})
            return
        self._publish(f"{base}/accepted", {**doc, **token})
        full = json.loads(self.data.get_thing_shadow(thingName=thing)["payload"].read())
        desired = full.get("state", {}).get("desired") or {}
        reported = full.get("state", {}).get("reported") or {}
        delta = {k: v for k, v in desired.items() if reported.get(k) != v}
        if delta:
            self._publish(f"$aws/things/{thing}/shadow/update/delta",
                          {"state": delta, "version": full.get("version")})

    def _publish(self, topic: str, body: dict[str, Any]) -> None:
        from awscrt import mqtt5

        self._client.publish(mqtt5.PublishPacket(topic=topic, payload=json.dumps(body).encode(),
                                                 qos=mqtt5.QoS.AT_LEAST_ONCE))

    def stop(self) -> None:
        for _ in self._workers:
            self._requests.put(None)
        for worker in self._workers:
            worker.join(10)
        if self._client is not None:
            stopped = threading.Event()
            try:
                self._client.stop()
            except Exception:  # noqa: BLE001 - already stopped
                pass
            stopped.wait(0.1)
            self._client = None


def _token(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload or b"{}")
    except ValueError:
        return {}
    return {"clientToken": body["clientToken"]} if isinstance(body, dict) and "clientToken" in body else {}
