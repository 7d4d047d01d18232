"""Benchmark: what the local world's IoT front door costs (orchestrator/drill/world/iotdoor.py).

`drill --local` puts each region's devices behind `RegionDoor`: TLS ends in Python, every CONNECT,
PUBLISH, SUBSCRIBE and delivery is authorised against the region's registry, and what is allowed is
relayed to mosquitto's plain listener. Before the door, devices spoke TLS to mosquitto directly. This
bench runs the same devices both ways against a real mosquitto on 127.0.0.1:

- `door`: the devices connect to a `RegionDoor` (as the drill builds it: the trust directory, the
  certificate-status watch, the authoriser with the grant delay) over an in-memory registry, so the
  figures are the door's own and not moto's; the registry counts its reads;
- `direct`: the devices connect to mosquitto's own TLS listener (mutual TLS, the same trust
  directory), the old drill.

Each device (its own EC key and certificate, its own thread) opens a TLS connection with the custom
domain as SNI, sends CONNECT (its thing name as client id) and waits for CONNACK, then publishes
`--messages` QoS 1 messages on its own telemetry topic, each waiting for its PUBACK (a round trip
through the door to the broker and back). Printed: the connect and round-trip latencies (p50 / p95
/ max), the messages per second of the publish phase, the process's CPU seconds, the threads alive
while every device is connected, and (door) the registry reads per CONNECT.

    .venv/bin/python -m bench.front_door --devices 200 --messages 20           # both ways, a table
    .venv/bin/python -m bench.front_door --via door --devices 200 --json       # one way (whole-process timing)
    .venv/bin/python -m bench.front_door --devices 200 --messages 20 --write   # also docs/performance.md

Exit 1 when a device is refused or a message is not acknowledged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from orchestrator.drill.world import pki  # noqa: E402
from orchestrator.drill.world.authfront import certificate_key, read_packet  # noqa: E402
from orchestrator.drill.world.broker import BrokerSpec, TrustStore, mosquitto_binary  # noqa: E402
from orchestrator.drill.world.iotdoor import RegionDoor, client_context  # noqa: E402
from orchestrator.drill.world.lightfleet import connect_packet, publish_packet  # noqa: E402
from orchestrator.drill.world.procs import Processes, free_port, wait_for_port  # noqa: E402
from programs import policies  # noqa: E402

SECTION = "IoT front door: what it costs against mosquitto's own TLS"
DOMAIN = "iot.example.com"
REGION, ACCOUNT = "eu-west-1", "123456789012"
PAGE = 250


class Registry:
    """A region's IoT registry as the door reads it (boto3's IoT client shape), in memory and
    counting each read, so the figures are the door's and not a moto server's."""

    def __init__(self) -> None:
        self.certs: dict[str, dict[str, Any]] = {}
        self.attached: dict[str, list[str]] = {}
        self.things: dict[str, list[str]] = {}
        self.documents = {"device": policies.dumps(policies.device_policy())}
        self.reads = 0
        self._lock = threading.Lock()

    def _read(self) -> None:
        with self._lock:
            self.reads += 1

    def add(self, cert_id: str, pem: str, thing: str) -> None:
        arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/{cert_id}"
        self.certs[cert_id] = {"certificateId": cert_id, "certificateArn": arn, "status": "ACTIVE",
                               "certificatePem": pem}
        self.attached[arn] = ["device"]
        self.things[arn] = [thing]

    def get_paginator(self, name: str) -> Any:
        assert name == "list_certificates"
        registry = self

        class Pages:
            def paginate(self, **_kw: Any) -> Iterator[dict[str, Any]]:
                rows = [{"certificateId": c["certificateId"], "status": c["status"]} for c in registry.certs.values()]
                for at in range(0, max(len(rows), 1), PAGE):
                    registry._read()
                    yield {"certificates": rows[at:at + PAGE]}

        return Pages()

    def describe_certificate(self, certificateId: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self._read()
        return {"certificateDescription": dict(self.certs[certificateId])}

    def list_attached_policies(self, target: str, marker: str | None = None, **_kw: Any) -> dict[str, Any]:
        self._read()
        return {"policies": [{"policyName": n} for n in self.attached.get(target, [])]}

    def get_policy(self, policyName: str) -> dict[str, Any]:  # noqa: N803
        self._read()
        return {"policyName": policyName, "policyDocument": self.documents[policyName]}

    def list_principal_things(self, principal: str, nextToken: str | None = None, **_kw: Any) -> dict[str, Any]:  # noqa: N803
        self._read()
        return {"things": self.things.get(principal, [])}


@dataclass
class Device:
    thing: str
    ctx: ssl.SSLContext
    sock: Any = None
    connect_s: float = 0.0
    round_trips: list[float] = field(default_factory=list)
    error: str = ""


def _connect(device: Device, port: int) -> None:
    started = time.perf_counter()
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock = device.ctx.wrap_socket(raw, server_hostname=DOMAIN)
        sock.sendall(connect_packet(device.thing))
        connack = read_packet(sock.recv)
        if connack is None or connack[0] >> 4 != 2 or connack[-1] != 0:
            device.error = f"CONNACK {connack!r}"
            sock.close()
            return
        device.sock = sock
    except (OSError, ssl.SSLError) as exc:
        device.error = f"{type(exc).__name__}: {exc}"
        return
    device.connect_s = time.perf_counter() - started


def _publish(device: Device, messages: int, payload: bytes) -> None:
    if device.sock is None:
        return
    topic = f"buildings/{device.thing}/telemetry"
    try:
        for pid in range(1, messages + 1):
            started = time.perf_counter()
            device.sock.sendall(publish_packet(pid, topic, payload))  # QoS 1
            ack = read_packet(device.sock.recv)
            if ack is None or ack[0] >> 4 != 4 or int.from_bytes(ack[2:4], "big") != pid:
                device.error = f"no PUBACK for message {pid}: {ack!r}"
                return
            device.round_trips.append(time.perf_counter() - started)
    except (OSError, ssl.SSLError) as exc:
        device.error = f"{type(exc).__name__}: {exc}"


def _cpu_of(pid: int) -> float:
    """A child's CPU seconds so far (user + system, /proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (0.0, 0.0, 0.0)
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (statistics.median(ordered), p95, ordered[-1])


@contextmanager
def _world(via: str, devices: int, work: Path) -> Iterator[tuple[int, Registry | None, list[Device], int]]:
    """A mosquitto (and, `door`, a RegionDoor in front of it) with `devices` registered devices."""
    ca, ca_key = pki.local_ca()
    server = pki.server_certificate(ca, ca_key, DOMAIN)
    (work / "server.pem").write_text(server.cert_pem)
    (work / "server.key").write_text(server.key_pem)
    trust = TrustStore(work / "trust")
    registry = Registry()
    fleet: list[Device] = []
    for i in range(devices):
        thing = f"bench-thing-{i:05d}"
        pair = pki.device_certificate(thing)
        trust.add(pair.cert_pem)
        der = ssl.PEM_cert_to_DER_cert(pair.cert_pem)
        cert_id = certificate_key(der)  # IoT's certificate id: the SHA-256 of the DER
        trust.ids[hashlib.sha256(der).hexdigest()] = cert_id  # as TrustStore.refresh records it
        registry.add(cert_id, pair.cert_pem, thing)
        with client_context(ca.cert_pem, pair.cert_pem, pair.key_pem) as ctx:
            fleet.append(Device(thing, ctx))
    tls_port = free_port()
    spec = BrokerSpec(REGION, "127.0.0.1", tls_port, free_port(), work / "broker", tls_listener=via == "direct")
    spec.write_config(server_cert=server.cert_pem, server_key=server.key_pem)
    if via == "direct":  # the broker's own trust directory holds the same certificates
        for path in trust.directory.iterdir():
            (spec.trust_directory / path.name).write_bytes(path.read_bytes())
    procs = Processes(work / "logs")
    door: RegionDoor | None = None
    try:
        proc = procs.start("broker", [mosquitto_binary(), "-c", str(spec.config_path)])
        wait_for_port("127.0.0.1", spec.service_port, 10, proc, "mosquitto")
        if via == "door":
            door = RegionDoor(REGION, "127.0.0.1", 0, ("127.0.0.1", spec.service_port), domain=DOMAIN,
                              cert_file=work / "server.pem", key_file=work / "server.key", trust=trust,
                              iot=registry, account=ACCOUNT).start()
            port = door.port
        else:
            wait_for_port("127.0.0.1", tls_port, 10, proc, "mosquitto TLS")
            port = tls_port
        yield port, (registry if via == "door" else None), fleet, proc.pid
    finally:
        if door is not None:
            door.stop()
        for d in fleet:
            if d.sock is not None:
                try:
                    d.sock.close()
                except OSError:
                    pass
        procs.stop_all()


def run(via: str, devices: int, messages: int, payload_bytes: int = 200, workers: int = 32) -> dict[str, Any]:
    payload = json.dumps({"t": "x" * max(payload_bytes - 10, 0)}).encode()
    with tempfile.TemporaryDirectory(prefix="bench-door-") as tmp, _world(via, devices, Path(tmp)) as (
            port, registry, fleet, broker_pid):
        reads_before = registry.reads if registry is not None else 0
        cpu0, broker0 = resource.getrusage(resource.RUSAGE_SELF), _cpu_of(broker_pid)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda d: _connect(d, port), fleet))
        connected_threads = threading.active_count()
        connect_reads = (registry.reads - reads_before) if registry is not None else 0
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda d: _publish(d, messages, payload), fleet))
        publish_wall = time.perf_counter() - started
        cpu1, broker1 = resource.getrusage(resource.RUSAGE_SELF), _cpu_of(broker_pid)
    errors = [f"{d.thing}: {d.error}" for d in fleet if d.error]
    trips = [t for d in fleet for t in d.round_trips]
    return {
        "via": via, "devices": devices, "messages": messages,
        "connected": sum(1 for d in fleet if d.connect_s), "errors": errors[:5], "error_count": len(errors),
        "connect_ms": [round(x * 1000, 1) for x in _quantiles([d.connect_s for d in fleet if d.connect_s])],
        "round_trip_ms": [round(x * 1000, 2) for x in _quantiles(trips)],
        "messages_per_s": round(len(trips) / publish_wall, 1) if publish_wall else 0.0,
        "cpu_s": round((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 2),
        "broker_cpu_s": round(broker1 - broker0, 2),
        "threads_connected": connected_threads,
        "registry_reads_per_connect": (round(connect_reads / max(sum(1 for d in fleet if d.connect_s), 1), 2)
                                       if registry is not None else None),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| via | devices x messages | connected | connect ms p50 / p95 / max | round trip ms p50 / p95 / max "
            "| messages/s | devices + door CPU s | mosquitto CPU s | threads in the bench process while connected "
            "| registry reads per CONNECT |\n"
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
    return head + "".join(
        f"| {r['via']} | {r['devices']} x {r['messages']} | {r['connected']} | "
        f"{' / '.join(map(str, r['connect_ms']))} | {' / '.join(map(str, r['round_trip_ms']))} | "
        f"{r['messages_per_s']} | {r['cpu_s']} | {r['broker_cpu_s']} | {r['threads_connected']} | "
        f"{r['registry_reads_per_connect'] if r['registry_reads_per_connect'] is not None else '-'} |\n"
        for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--via", choices=("door", "direct", "both"), default="both")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", action="store_true", help="also write the table into docs/performance.md")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.messages < 1:
        parser.error("--devices and --messages must be at least 1")
    ways = ("direct", "door") if args.via == "both" else (args.via,)
    rows = [run(way, args.devices, args.messages) for way in ways]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows))
    if args.write:
        load = os.getloadavg()
        write_section(SECTION, (
            f"`.venv/bin/python -m bench.front_door --devices {args.devices} --messages {args.messages} --write` "
            f"on {machine()}, load average {load[0]:.1f} at the end.\n\n" + table(rows)))
    return 1 if any(r["error_count"] or r["connected"] < r["devices"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
