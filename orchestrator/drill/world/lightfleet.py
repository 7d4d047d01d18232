"""A light device simulator for fleet-scale failovers: raw MQTT 3.1.1 over asyncio, one coroutine
per device, against a real mosquitto, through IoT Core's CONNECT quotas (`admission.Admission`).

The SDK devices (`fleet.Device`) stay the reference; this one costs a coroutine and a socket per
device instead of a CRT client and its threads, so 1,000+ devices fit a laptop. What it keeps of a
conforming device: each attempt re-resolves the name through a cache kept for the record's TTL,
retries on exponential backoff with full jitter and a cap, and after CONNACK subscribes to its own
topic, publishes one QoS 1 message and waits for both the PUBACK and its own message (the session
is usable, not only accepted). What it leaves out: TLS (handshake cost is 0 in the model too).

The scripted Route 53 answers the killed region until `detection`, then the survivor; the killed
region's address refuses TCP. Every time is multiplied by `scale` (intervals, TTL, backoff, the
quotas' second), so a run at scale 0.05 is the real failover twenty times faster.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from dataclasses import dataclass, field

from orchestrator.drill.model import Stats
from orchestrator.drill.world.admission import Admission, Verdict


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, keep_alive: int = 60) -> bytes:
    body = _s("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keep_alive) + _s(client_id)
    return b"\x10" + _remaining(len(body)) + body


def subscribe_packet(packet_id: int, topic: str) -> bytes:
    body = struct.pack("!H", packet_id) + _s(topic) + b"\x01"
    return b"\x82" + _remaining(len(body)) + body


def publish_packet(packet_id: int, topic: str, payload: bytes) -> bytes:
    body = _s(topic) + struct.pack("!H", packet_id) + payload
    return b"\x32" + _remaining(len(body)) + body


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    n, mult = 0, 1
    while True:
        b = (await reader.readexactly(1))[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first, await reader.readexactly(n)


@dataclass
class LightLog:
    attempts: list[float] = field(default_factory=list)
    refused: int = 0  # attempts throttled by the CONNECT quotas
    first_fresh: float | None = None  # first attempt that got the survivor's answer
    fresh_at: float | None = None  # when the old cached answer expired (or the flip, if later)
    connected: float | None = None  # CONNACK accepted
    echoed: float | None = None  # own QoS 1 message acknowledged and received back


@dataclass(frozen=True)
class LightResult:
    devices: int
    detection: float
    rto: Stats
    dns: Stats
    backoff: Stats
    admission: Stats
    usable: int  # devices whose round trip (PUBACK + own message) completed
    throttled: dict[str, int]


@dataclass
class LightFleet:
    devices: int
    broker: tuple[str, int]  # the survivor's plain MQTT listener
    dead: tuple[str, int]  # the killed region's address: refuses TCP
    scale: float = 0.05
    interval: float = 30.0
    threshold: int = 3
    ttl: float = 60.0
    min_backoff: float = 1.0
    max_backoff: float = 120.0
    connect_quota: float = 500.0
    seed: int = 25
    logs: dict[str, LightLog] = field(default_factory=dict)

    async def run(self, timeout: float = 120.0) -> LightResult:
        rng = random.Random(self.seed)
        detection = (self.threshold - 1) * self.interval + rng.uniform(0, self.interval)
        admission = Admission(account_rate=self.connect_quota, time_scale=self.scale)
        t0 = time.monotonic()
        writers: list[asyncio.StreamWriter] = []

        def now() -> float:  # real seconds since the kill
            return (time.monotonic() - t0) / self.scale

        async def device(i: int) -> None:
            cid = f"light-{i:06d}"
            log = self.logs.setdefault(cid, LightLog())
            drng = random.Random(f"{self.seed}-{i}")
            cached_until, cached_new, old_expiry, step = -1.0, False, detection, 0
            while True:
                t = now()
                log.attempts.append(t)
                if t >= cached_until:
                    cached_new, cached_until = t >= detection, t + self.ttl
                    if not cached_new:
                        old_expiry = cached_until
                if not cached_new:
                    try:
                        _r, w = await asyncio.open_connection(*self.dead)
                        w.close()
                    except OSError:
                        pass
                else:
                    if log.first_fresh is None:
                        log.first_fresh = t
                        log.fresh_at = min(max(detection, old_expiry), t)
                    if admission.admit("survivor", cid) is Verdict.ADMITTED:
                        reader, writer = await asyncio.open_connection(*self.broker)
                        writer.write(connect_packet(cid))
                        await writer.drain()
                        kind, body = await read_packet(reader)
                        if kind >> 4 == 2 and body[1] == 0:
                            log.connected = now()
                            writers.append(writer)
                            await self._round_trip(cid, reader, writer)
                            log.echoed = now()
                            return
                        writer.close()
                    else:
                        log.refused += 1
                delay = drng.uniform(0, min(self.max_backoff, self.min_backoff * 2 ** step))
                step += 1
                await asyncio.sleep(delay * self.scale)

        try:
            await asyncio.wait_for(asyncio.gather(*(device(i) for i in range(self.devices))), timeout)
        finally:
            for w in writers:
                w.close()
        rtos, dnss, backs, adms = [], [], [], []
        for log in self.logs.values():
            if log.connected is None or log.first_fresh is None or log.fresh_at is None:
                continue
            rtos.append(log.connected)
            dnss.append(log.fresh_at - detection)
            backs.append(log.first_fresh - log.fresh_at)
            adms.append(log.connected - log.first_fresh)
        counts = admission.counts.get("survivor")
        return LightResult(self.devices, detection, Stats.of(rtos), Stats.of(dnss), Stats.of(backs),
                           Stats.of(adms), sum(1 for g in self.logs.values() if g.echoed is not None),
                           dict(vars(counts)) if counts else {})

    @staticmethod
    async def _round_trip(cid: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        topic = f"dt/{cid}/echo"
        writer.write(subscribe_packet(1, topic))
        await writer.drain()
        while (await read_packet(reader))[0] >> 4 != 9:  # SUBACK
            pass
        writer.write(publish_packet(2, topic, b'{"seq":1}'))
        await writer.drain()
        acked = echoed = False
        while not (acked and echoed):
            kind, body = await read_packet(reader)
            if kind >> 4 == 4:  # PUBACK
                acked = True
            elif kind >> 4 == 3:  # our own message back (QoS 1: acknowledge it)
                tlen = struct.unpack("!H", body[:2])[0]
                pid = body[2 + tlen:4 + tlen]
                writer.write(b"\x40\x02" + pid)
                echoed = True

