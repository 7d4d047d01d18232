"""The local world's IoT endpoint (orchestrator/drill/world/iotdoor.py) against a real moto registry and a
real mosquitto: what `drill --local` puts in front of every region's broker.

A device is let in only as IoT Core would let it in, from THAT region's registry: a registry sync that
missed an AttachPolicy leaves the device refused in the secondary; a deactivated or revoked
certificate is cut off while connected and refused on its next CONNECT; a stopped door (the region's
outage) refuses TCP, so the Route 53 health checks see it.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from orchestrator.drill.world import pki
from orchestrator.drill.world.broker import BrokerSpec, TrustStore, mosquitto_binary
from orchestrator.drill.world.iotdoor import RegionDoor, client_context, connect_verdict
from orchestrator.drill.world.procs import Processes, free_port, wait_for_port
from orchestrator.errors import InputRejected
from orchestrator.registry import sync_registry
from programs import policies
from tests.ops.conftest import DST, SRC

DOMAIN = "iot.example.com"
POLICY = "device-policy"
THING = "hq-thermostat-7"


def _mosquitto() -> str:
    try:
        return mosquitto_binary()
    except InputRejected as exc:
        pytest.fail(f"these tests need mosquitto (the drill's broker): {exc}")


@dataclass
class World:
    aws: AwsContext
    ca: pki.KeyPair
    doors: dict[str, RegionDoor]
    procs: Processes

    def iot(self, region: str) -> Any:
        return client(self.aws, "iot", region)


@pytest.fixture
def world(moto_endpoint: str, tmp_path: Path) -> Iterator[World]:
    """Both regions' doors, each in front of its own mosquitto; the registry reads are IoT Core's
    own (not API calls under the account's quotas), so they go to moto directly."""
    aws = AwsContext(endpoint_url=moto_endpoint)
    ca, ca_key = pki.local_ca()
    server = pki.server_certificate(ca, ca_key, DOMAIN)
    procs = Processes(tmp_path / "logs")
    doors: dict[str, RegionDoor] = {}
    account = client(aws, "sts", SRC).get_caller_identity()["Account"]
    try:
        for region in (SRC, DST):
            spec = BrokerSpec(region, "127.0.0.1", 0, free_port(), tmp_path / region, tls_listener=False)
            spec.write_config(server_cert=server.cert_pem, server_key=server.key_pem)
            assert "require_certificate" not in spec.config_path.read_text()  # no way around the door
            proc = procs.start(f"broker-{region}", [_mosquitto(), "-c", str(spec.config_path)])
            wait_for_port("127.0.0.1", spec.service_port, 10, proc, f"mosquitto for {region}")
            iot = client(aws, "iot", region)
            doors[region] = RegionDoor(region, "127.0.0.1", 0, ("127.0.0.1", spec.service_port), domain=DOMAIN,
                                       cert_file=spec.directory / "server.pem", key_file=spec.directory / "server.key",
                                       trust=TrustStore(spec.trust_directory), iot=iot, account=account).start()
        yield World(aws, ca, doors, procs)
    finally:
        for door in doors.values():
            door.stop()
        procs.stop_all()


def register(iot: Any, thing: str, keys: pki.KeyPair, *, policy: bool) -> str:
    iot.create_thing(thingName=thing)
    cert = iot.register_certificate_without_ca(certificatePem=keys.cert_pem, status="ACTIVE")
    if policy:
        iot.attach_policy(policyName=POLICY, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    return str(cert["certificateArn"])


def follow(world: World) -> None:
    """What the drill's registry follower does every second: trust what each registry holds now."""
    for region, door in world.doors.items():
        door.trust.refresh(world.iot(region))


def verdict(world: World, region: str, keys: pki.KeyPair, client_id: str = THING) -> str:
    with client_context(world.ca.cert_pem, keys.cert_pem, keys.key_pem) as tls:
        return connect_verdict("127.0.0.1", world.doors[region].port, DOMAIN, client_id, tls)


def _connected(world: World, region: str, keys: pki.KeyPair) -> Any:
    """A device connected through the door (CONNACK 0), its TLS socket open."""
    with client_context(world.ca.cert_pem, keys.cert_pem, keys.key_pem) as tls:
        sock = tls.wrap_socket(socket.create_connection(("127.0.0.1", world.doors[region].port), timeout=5),
                               server_hostname=DOMAIN)
    cid = THING.encode()
    body = b"\x00\x04MQTT" + bytes([4, 0x02, 0, 60]) + len(cid).to_bytes(2, "big") + cid
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(4) == bytes([0x20, 2, 0, 0])
    return sock


def _closed_within(sock: Any, seconds: float) -> bool:
    """True when the peer closes the connection within `seconds`, the device sending nothing."""
    sock.settimeout(seconds)
    try:
        return sock.recv(16) == b""
    except (ssl.SSLError, ConnectionError):
        return True
    except TimeoutError:
        return False


def test_a_sync_that_missed_attach_policy_locks_the_device_out_of_the_secondary(world: World) -> None:
    west, central = world.iot(SRC), world.iot(DST)
    west.create_policy(policyName=POLICY, policyDocument=policies.dumps(policies.device_policy()))
    keys = pki.device_certificate(THING)
    arn = register(west, THING, keys, policy=False)
    other = pki.device_certificate("hq-door-1")  # keeps the policy in use, so the sync carries it
    register(west, "hq-door-1", other, policy=True)
    report = sync_registry(world.aws, SRC, DST, rate=10_000)
    assert report.ok
    west.attach_policy(policyName=POLICY, target=arn)  # after the sync: the secondary never got it
    follow(world)
    central_arn = central.describe_certificate(certificateId=arn.split("/")[-1])["certificateDescription"][
        "certificateArn"]
    assert central.list_attached_policies(target=central_arn)["policies"] == []
    assert POLICY in {p["policyName"] for p in central.list_policies()["policies"]}

    assert verdict(world, SRC, keys) == "accepted"
    assert verdict(world, DST, keys) == "refused: not authorized"
    assert any("no attached policy allows iot:Connect" in r for r in world.doors[DST].refusals)
    # the device whose attachment was carried connects in both; the policy's own rules hold there too
    assert verdict(world, DST, other, client_id="hq-door-1") == "accepted"
    assert verdict(world, DST, other, client_id=THING) == "refused: not authorized"  # not its thing name

    # the next sync carries the attachment; the secondary lets the device in once IoT Core's policy
    # cache has the grant (8 minutes at most: iotdoor.POLICY_GRANT_S, here made short), not at once
    world.doors[DST].front.authoriser.grant_delay_s = 0.5  # type: ignore[union-attr]
    assert sync_registry(world.aws, SRC, DST, rate=10_000).ok
    assert verdict(world, DST, keys) == "refused: not authorized"
    assert "policy cache" in world.doors[DST].refusals[-1]
    time.sleep(0.6)
    assert verdict(world, DST, keys) == "accepted"


def test_a_certificate_never_synced_is_refused_at_the_tls_handshake(world: World) -> None:
    west = world.iot(SRC)
    west.create_policy(policyName=POLICY, policyDocument=policies.dumps(policies.device_policy()))
    keys = pki.device_certificate(THING)
    register(west, THING, keys, policy=True)
    follow(world)
    assert verdict(world, SRC, keys) == "accepted"
    assert verdict(world, DST, keys) == "refused at the TLS handshake"


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_a_certificate_deactivated_while_connected_is_cut_off_and_refused_on_reconnect(
        world: World, status: str) -> None:
    west = world.iot(SRC)
    west.create_policy(policyName=POLICY, policyDocument=policies.dumps(policies.device_policy()))
    keys = pki.device_certificate(THING)
    arn = register(west, THING, keys, policy=True)
    follow(world)
    live = _connected(world, SRC, keys)
    bystander_keys = pki.device_certificate("hq-door-1")
    register(west, "hq-door-1", bystander_keys, policy=True)
    follow(world)
    assert not _closed_within(live, 1.5)  # connected, idle, and left alone while ACTIVE

    west.update_certificate(certificateId=arn.split("/")[-1], newStatus=status)
    # closed by the endpoint, the device sending nothing (IoT Core: at once; the door's watch lists
    # statuses every 0.5 s); the wait is bounded, its length is not what is tested
    assert _closed_within(live, 3.0)
    assert any(status in r and "closed" in r for r in world.doors[SRC].refusals)
    assert verdict(world, SRC, keys) == "refused: not authorized"
    # another device's connection is not touched
    assert verdict(world, SRC, bystander_keys, client_id="hq-door-1") == "accepted"


def test_a_policy_detached_while_connected_refuses_the_next_publish_after_the_policy_cache(world: World) -> None:
    """IoT Core evaluates each publish against its cached policies; a detached policy stops granting
    once the cache is re-read (6 to 8 minutes in AWS; here the door's cache period, made short)."""
    west = world.iot(SRC)
    west.create_policy(policyName=POLICY, policyDocument=policies.dumps(policies.device_policy()))
    keys = pki.device_certificate(THING)
    arn = register(west, THING, keys, policy=True)
    follow(world)
    world.doors[SRC].policy_cache_s = 0.3  # IoT's 6 minutes, on a fast time scale
    live = _connected(world, SRC, keys)
    topic = f"buildings/{THING}/telemetry".encode()
    publish = bytes([0x30, 2 + len(topic) + 2]) + len(topic).to_bytes(2, "big") + topic + b"{}"
    live.sendall(publish)
    assert not _closed_within(live, 1.0)  # allowed while attached
    west.detach_policy(policyName=POLICY, target=arn)
    time.sleep(0.3 + 3 * 0.5)  # the cache period and a few of the door's watch rounds
    live.sendall(publish)
    assert _closed_within(live, 3.0)
    assert any("no attached policy allows iot:Publish" in r for r in world.doors[SRC].refusals)


def test_a_stopped_door_refuses_tcp_and_cuts_open_connections(world: World) -> None:
    """The region's outage as the health checks and devices see it."""
    west = world.iot(SRC)
    west.create_policy(policyName=POLICY, policyDocument=policies.dumps(policies.device_policy()))
    keys = pki.device_certificate(THING)
    register(west, THING, keys, policy=True)
    follow(world)
    live = _connected(world, SRC, keys)
    port = world.doors[SRC].port
    world.doors[SRC].stop()
    assert _closed_within(live, 3.0)
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", port)) != 0
    # and it comes back on the same port (the drill restarts the region)
    world.doors[SRC].start()
    assert world.doors[SRC].port == port
    assert verdict(world, SRC, keys) == "accepted"
