"""The drill brokers' IoT authoriser (orchestrator/drill/world/iotpolicy.py): IoT Core's policy rules,
evaluated on the product's own device policy and on the mistakes issue 21 names (a literal region,
a missing attachment, a deactivated certificate, no SNI)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.drill.world.iotpolicy import (
    Action,
    Authoriser,
    PolicyError,
    Principal,
    evaluate,
    parse,
    resource_arn,
    substitute,
    topic_filter_valid,
)
from programs import policies

ACCOUNT = "123456789012"
WEST, CENTRAL = "eu-west-1", "eu-central-1"
THING = "hq-thermostat-7"
DEVICE = parse(policies.device_policy())


def me(region: str = WEST, client_id: str = THING, attached: bool = True) -> Principal:
    return Principal(region, ACCOUNT, client_id, client_id if attached else None)


def test_resources_are_the_regions_client_topic_and_topicfilter_arns() -> None:
    assert resource_arn(Action.CONNECT, me(), THING) == f"arn:aws:iot:{WEST}:{ACCOUNT}:client/{THING}"
    assert resource_arn(Action.PUBLISH, me(), "a/b").endswith(":topic/a/b")
    assert resource_arn(Action.RECEIVE, me(), "a/b").endswith(":topic/a/b")
    assert resource_arn(Action.SUBSCRIBE, me(CENTRAL), "a/+").startswith(f"arn:aws:iot:{CENTRAL}:")


def test_the_device_policy_lets_a_thing_connect_only_as_itself_and_only_when_attached() -> None:
    assert evaluate(DEVICE, Action.CONNECT, THING, me())
    assert not evaluate(DEVICE, Action.CONNECT, "someone-else", me(client_id="someone-else", attached=False))
    # its own name as client id, but the certificate is not attached to that thing: IsAttached false
    refused = evaluate(DEVICE, Action.CONNECT, THING, me(attached=False))
    assert not refused and "no attached policy allows iot:Connect" in refused.reason


def test_the_device_policy_keeps_a_thing_to_its_own_topics_and_shadow() -> None:
    assert evaluate(DEVICE, Action.PUBLISH, f"buildings/{THING}/telemetry", me())
    assert not evaluate(DEVICE, Action.PUBLISH, "buildings/other-thing/telemetry", me())
    assert evaluate(DEVICE, Action.SUBSCRIBE, f"buildings/{THING}/commands", me())
    assert evaluate(DEVICE, Action.PUBLISH, f"$aws/things/{THING}/shadow/update", me())
    assert evaluate(DEVICE, Action.RECEIVE, f"$aws/things/{THING}/shadow/update/delta", me())
    assert not evaluate(DEVICE, Action.RECEIVE, "$aws/things/other-thing/shadow/update/delta", me())
    # MQTT wildcards are literal characters in a policy: `+` does not mean "any level" there
    assert not evaluate(DEVICE, Action.SUBSCRIBE, "buildings/+/telemetry", me())
    # the same policy works in every region (no region in its ARNs), the point of `*`
    assert evaluate(DEVICE, Action.PUBLISH, f"buildings/{THING}/telemetry", me(CENTRAL))


def test_a_literal_region_locks_devices_out_after_a_failover() -> None:
    pinned = parse(json.dumps(policies.device_policy()).replace("arn:aws:iot:*:*", f"arn:aws:iot:{WEST}:{ACCOUNT}"))
    assert evaluate(pinned, Action.CONNECT, THING, me(WEST))
    refused = evaluate(pinned, Action.CONNECT, THING, me(CENTRAL))
    assert not refused and f"arn:aws:iot:{CENTRAL}:{ACCOUNT}:client/{THING}" in refused.reason


def test_deny_wins_and_action_wildcards_ignore_case() -> None:
    doc = parse({"Statement": [
        {"Effect": "Allow", "Action": "IOT:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "iot:Pub*", "Resource": "arn:aws:iot:*:*:topic/secret/?"},
    ]})
    assert evaluate(doc, Action.PUBLISH, "secret/ab", me())  # `?` is one character
    refused = evaluate(doc, Action.PUBLISH, "secret/a", me())
    assert not refused and "explicitly denied" in refused.reason
    assert evaluate(doc, Action.SUBSCRIBE, "secret/a", me())
    assert not evaluate((), Action.CONNECT, THING, me())  # default deny


def test_policy_variables_resolve_or_match_nothing() -> None:
    assert substitute("client/${iot:ClientId}", me(client_id="c1", attached=False)) == "client/c1"
    assert substitute("x/${iot:Connection.Thing.ThingName}", me(attached=False)) is None
    assert substitute("x/${iot:Unknown.Variable}", me()) is None
    doc = parse({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iot:Connect",
                                                        "Resource": "arn:aws:iot:*:*:client/${iot:ClientId}"}})
    assert evaluate(doc, Action.CONNECT, "anything", me(client_id="anything", attached=False))
    # without Version 2012-10-17 a variable is literal text (IAM JSON policy elements: Version)
    for version in ({}, {"Version": "2008-10-17"}):
        literal = parse({**version, "Statement": {"Effect": "Allow", "Action": "iot:Connect",
                                                  "Resource": "arn:aws:iot:*:*:client/${iot:ClientId}"}})
        assert not evaluate(literal, Action.CONNECT, "anything", me(client_id="anything", attached=False))
        literal_id = "${iot:ClientId}"
        assert evaluate(literal, Action.CONNECT, literal_id, me(client_id=literal_id, attached=False))
    unresolved = parse({"Version": "2012-10-17", "Statement": {
        "Effect": "Deny", "Action": "iot:Connect",
        "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}})
    assert not evaluate(unresolved + doc, Action.CONNECT, THING, me())  # resolves: the Deny applies
    assert evaluate(unresolved + doc, Action.CONNECT, THING, me(attached=False))  # unresolved: no match


def test_what_is_not_modelled_is_refused_not_guessed() -> None:
    with pytest.raises(PolicyError, match="Principal"):
        parse({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "iot:*", "Resource": "*"}]})
    with pytest.raises(PolicyError, match="IpAddress"):
        parse({"Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*",
                              "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]})


def test_topic_filters_follow_mqtt() -> None:
    assert topic_filter_valid("a/+/c") and topic_filter_valid("a/#") and topic_filter_valid("#")
    assert not topic_filter_valid("a/#/c") and not topic_filter_valid("a/b+") and not topic_filter_valid("")


class Registry:
    """A region's IoT registry as the authoriser reads it (boto3's IoT client shape)."""

    def __init__(self) -> None:
        self.certs: dict[str, dict[str, Any]] = {}
        self.attached: dict[str, list[str]] = {}
        self.things: dict[str, list[str]] = {}
        self.documents: dict[str, str] = {}
        self.reads = 0

    def add(self, cert_id: str, *, policy: str | None = "device", thing: str | None = THING) -> str:
        arn = f"arn:aws:iot:{WEST}:{ACCOUNT}:cert/{cert_id}"
        self.certs[cert_id] = {"certificateId": cert_id, "certificateArn": arn, "status": "ACTIVE"}
        self.attached[arn] = [policy] if policy else []
        self.things[arn] = [thing] if thing else []
        self.documents["device"] = policies.dumps(policies.device_policy())
        return arn

    def describe_certificate(self, certificateId: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.reads += 1
        if certificateId not in self.certs:
            raise RuntimeError("An error occurred (ResourceNotFoundException)")
        return {"certificateDescription": dict(self.certs[certificateId])}

    def list_attached_policies(self, target: str, marker: str | None = None) -> dict[str, Any]:
        names = self.attached.get(target, [])
        page = names[int(marker or 0):int(marker or 0) + 1]  # one per page: the authoriser must page
        nxt = int(marker or 0) + 1
        return {"policies": [{"policyName": n} for n in page], **({"nextMarker": str(nxt)} if nxt < len(names) else {})}

    def get_policy(self, policyName: str) -> dict[str, Any]:  # noqa: N803
        return {"policyName": policyName, "policyDocument": self.documents[policyName]}

    def list_principal_things(self, principal: str, nextToken: str | None = None) -> dict[str, Any]:  # noqa: N803
        return {"things": self.things.get(principal, [])}


def test_connect_needs_sni_for_the_custom_domain() -> None:
    registry = Registry()
    registry.add("c1")
    auth = Authoriser(registry, WEST, ACCOUNT, custom_domain="iot.example.com")
    refused, session = auth.connect("c1", THING, None)
    assert not refused and "SNI" in refused.reason and session is None
    assert not auth.connect("c1", THING, "other.example.com")[0]
    ok, session = auth.connect("c1", THING, "IOT.example.com.")
    assert ok and session is not None


def test_a_missing_policy_attachment_refuses_the_device() -> None:
    """The drill's "sync missed AttachPolicy" case: registered, active, attached to its thing, no policy."""
    registry = Registry()
    registry.add("c1", policy=None)
    refused, _ = Authoriser(registry, CENTRAL, ACCOUNT, custom_domain="iot.example.com").connect(
        "c1", THING, "iot.example.com")
    assert not refused and "no attached policy allows iot:Connect" in refused.reason


def test_a_deactivated_certificate_is_refused_at_once_also_mid_session() -> None:
    registry = Registry()
    registry.add("c1")
    auth = Authoriser(registry, WEST, ACCOUNT, custom_domain="iot.example.com")
    ok, session = auth.connect("c1", THING, "iot.example.com")
    assert ok and session is not None
    topic = f"buildings/{THING}/telemetry"
    assert auth.publish(session, topic, qos=1)
    registry.certs["c1"]["status"] = "INACTIVE"
    refused = auth.publish(session, topic, qos=1)
    assert not refused and "INACTIVE" in refused.reason
    assert not auth.subscribe(session, topic) and not auth.receive(session, topic)
    assert not auth.connect("c1", THING, "iot.example.com")[0]
    registry.certs["c1"]["status"] = "REVOKED"
    assert "REVOKED" in auth.connect("c1", THING, "iot.example.com")[0].reason
    assert "not registered" in auth.connect("unknown", THING, "iot.example.com")[0].reason


def test_qos_2_and_malformed_topics_are_refused() -> None:
    registry = Registry()
    registry.add("c1")
    auth = Authoriser(registry, WEST, ACCOUNT)
    ok, session = auth.connect("c1", THING, None)  # no custom domain: SNI not demanded here
    assert ok and session is not None
    assert "QoS 2" in auth.publish(session, f"buildings/{THING}/telemetry", qos=2).reason
    assert "QoS 2" in auth.subscribe(session, f"buildings/{THING}/telemetry", qos=2).reason
    assert not auth.publish(session, f"buildings/{THING}/+")
    assert not auth.subscribe(session, f"buildings/{THING}/#/x")


def test_policies_attached_across_pages_all_count() -> None:
    registry = Registry()
    arn = registry.add("c1", policy="deny-telemetry")
    registry.attached[arn] = ["device", "deny-telemetry"]
    registry.documents["deny-telemetry"] = json.dumps({"Statement": [
        {"Effect": "Deny", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/buildings/*/telemetry"}]})
    auth = Authoriser(registry, WEST, ACCOUNT)
    ok, session = auth.connect("c1", THING, None)
    assert ok and session is not None
    assert not auth.publish(session, f"buildings/{THING}/telemetry")
    assert auth.publish(session, f"buildings/{THING}/status")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_grant_is_cached_as_a_revoke_is_for_new_connects_and_open_connections() -> None:
    """IoT Developer Guide, "AWS IoT Core policies": policy documents are cached, "it may take a few
    minutes to access a resource that has recently been granted access" (6 to 8 minutes). The
    door's authoriser (grant_delay_s = iotdoor.POLICY_GRANT_S on its time scale) keeps the view it
    read before a grant bounding every decision for that long: a CONNECT refused for a missing
    AttachPolicy stays refused after the attach, and a wider default version does not widen an
    open connection, until the delay has passed; a revoke still applies at once."""
    from orchestrator.drill.world.iotdoor import POLICY_CACHE_S, POLICY_GRANT_S

    assert POLICY_GRANT_S == 480.0 and POLICY_GRANT_S >= POLICY_CACHE_S
    registry, clock = Registry(), _Clock()
    arn = registry.add("c1", policy=None)  # the sync missed AttachPolicy
    auth = Authoriser(registry, WEST, ACCOUNT, grant_delay_s=POLICY_GRANT_S, clock=clock)
    assert not auth.connect("c1", THING, None)[0]
    registry.attached[arn] = ["device"]  # the next sync attaches it
    clock.now += 1.0
    refused, session = auth.connect("c1", THING, None)
    assert not refused and session is None and "policy cache" in refused.reason
    clock.now += POLICY_GRANT_S - 2.0
    assert not auth.connect("c1", THING, None)[0]
    clock.now += 2.0  # 8 minutes after the authoriser first read the grant
    ok, session = auth.connect("c1", THING, None)
    assert ok and session is not None

    # an open connection: a wider default version is not effective before the delay
    narrow = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/${iot:ClientId}"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/buildings/*/telemetry"}]})
    wide = registry.documents["device"]
    registry.documents["device"] = narrow
    clock.now += POLICY_GRANT_S
    auth.refresh(session)  # the narrower version: effective at once
    assert not auth.subscribe(session, f"buildings/{THING}/commands")
    registry.documents["device"] = wide  # CreatePolicyVersion --set-as-default, wider again
    clock.now += 10.0
    auth.refresh(session)
    refused = auth.subscribe(session, f"buildings/{THING}/commands")
    assert not refused and "policy cache" in refused.reason
    assert auth.publish(session, f"buildings/{THING}/telemetry")  # allowed by both views
    clock.now += POLICY_GRANT_S
    assert auth.subscribe(session, f"buildings/{THING}/commands")

    # without a delay (the authoriser alone, as before) a grant applies at the next read
    plain = Registry()
    arn2 = plain.add("c2", policy=None)
    direct = Authoriser(plain, WEST, ACCOUNT)
    assert not direct.connect("c2", THING, None)[0]
    plain.attached[arn2] = ["device"]
    assert direct.connect("c2", THING, None)[0]


# -- the front door: TLS with SNI, MQTT packets authorised (orchestrator/drill/world/authfront.py) -------
def _mqtt(kind: int, body: bytes, flags: int = 0) -> bytes:
    n, length = len(body), bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        length.append(b | (0x80 if n else 0))
        if not n:
            return bytes([kind << 4 | flags]) + bytes(length) + body


def _s(text: str) -> bytes:
    return len(text.encode()).to_bytes(2, "big") + text.encode()


def connect_packet(client_id: str) -> bytes:
    return _mqtt(1, _s("MQTT") + bytes([4, 0x02, 0, 60]) + _s(client_id))


def publish_packet(topic: str, qos: int = 0, pid: int = 1) -> bytes:
    return _mqtt(3, _s(topic) + (pid.to_bytes(2, "big") if qos else b"") + b"{}", flags=qos << 1)


def subscribe_packet(topic_filter: str, qos: int = 1) -> bytes:
    return _mqtt(8, (7).to_bytes(2, "big") + _s(topic_filter) + bytes([qos]), flags=2)


class Upstream:
    """A broker's plain listener: answers CONNECT with CONNACK 0, records what arrives, and can
    deliver a PUBLISH to the one connection it has."""

    def __init__(self) -> None:
        import socket
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()
        self.packets: list[bytes] = []
        self.conn: Any = None
        self.connected = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from orchestrator.drill.world.authfront import read_packet

        self.conn, _ = self.server.accept()
        while True:
            try:
                packet = read_packet(self.conn.recv)
            except OSError:
                return
            if packet is None:
                return
            self.packets.append(packet)
            if packet[0] >> 4 == 1:
                self.conn.sendall(bytes([0x20, 2, 0, 0]))
                self.connected.set()


@pytest.fixture
def tls(tmp_path: Any) -> Any:
    import ssl

    from orchestrator.drill.world import pki

    ca, ca_key = pki.local_ca()
    server = pki.server_certificate(ca, ca_key, "iot.example.com")
    device = pki.device_certificate(THING)
    for name, text in {"server.pem": server.cert_pem, "server.key": server.key_pem,
                       "device.pem": device.cert_pem, "device.key": device.key_pem}.items():
        (tmp_path / name).write_text(text)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cadata=device.cert_pem)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cadata=ca.cert_pem)
    client_ctx.load_cert_chain(tmp_path / "device.pem", tmp_path / "device.key")
    der = ssl.PEM_cert_to_DER_cert(device.cert_pem)
    return server_ctx, client_ctx, der


def _front(tls: Any, registry: Registry) -> tuple[Any, Upstream]:
    from orchestrator.drill.world.authfront import AuthorisingFront

    upstream = Upstream()
    auth = Authoriser(registry, WEST, ACCOUNT, custom_domain="iot.example.com")
    return AuthorisingFront(auth, tls[0], "127.0.0.1", 0, upstream.address).start(), upstream


def _dial(tls: Any, front: Any, sni: str | None = "iot.example.com") -> Any:
    import socket

    ctx = tls[1]
    if sni is None:
        ctx.check_hostname = False
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", front.port), timeout=5), server_hostname=sni)
    return sock


def _closed(sock: Any) -> bool:
    try:
        return sock.recv(16) == b""
    except OSError:
        return True


def test_the_front_relays_what_the_policy_allows_and_cuts_what_it_does_not(tls: Any) -> None:
    from orchestrator.drill.world.authfront import certificate_key

    registry = Registry()
    registry.add(certificate_key(tls[2]))
    front, upstream = _front(tls, registry)
    device = _dial(tls, front)
    device.sendall(connect_packet(THING))
    assert device.recv(4) == bytes([0x20, 2, 0, 0])  # the broker's CONNACK, relayed
    device.sendall(publish_packet(f"buildings/{THING}/telemetry", qos=1))
    device.sendall(subscribe_packet(f"buildings/{THING}/commands"))
    # a delivery the device may not Receive is dropped, one it may is delivered
    import time

    for _ in range(100):
        if len(upstream.packets) >= 3:
            break
        time.sleep(0.02)
    upstream.conn.sendall(publish_packet("buildings/other-thing/commands"))
    upstream.conn.sendall(publish_packet(f"buildings/{THING}/commands"))
    delivered = device.recv(64)
    assert f"buildings/{THING}/commands".encode() in delivered and b"other-thing" not in delivered
    device.sendall(publish_packet("buildings/other-thing/telemetry"))
    assert _closed(device)
    kinds = [(p[0] >> 4) for p in upstream.packets]
    assert kinds[:3] == [1, 3, 8] and not any(b"other-thing/telemetry" in p for p in upstream.packets)
    assert any("buildings/other-thing/telemetry" in r for r in front.refusals)
    front.stop()


def test_the_front_refuses_no_sni_and_a_certificate_deactivated_mid_session(tls: Any) -> None:
    from orchestrator.drill.world.authfront import certificate_key

    registry = Registry()
    cert_id = certificate_key(tls[2])
    registry.add(cert_id)
    front, upstream = _front(tls, registry)
    bare = _dial(tls, front, sni=None)
    bare.sendall(connect_packet(THING))
    assert bare.recv(4) == bytes([0x20, 2, 0, 5])  # not authorized
    assert not upstream.connected.is_set() and "SNI" in front.refusals[-1]

    device = _dial(tls, front)
    device.sendall(connect_packet(THING))
    assert device.recv(4) == bytes([0x20, 2, 0, 0])
    registry.certs[cert_id]["status"] = "INACTIVE"
    device.sendall(publish_packet(f"buildings/{THING}/telemetry"))
    assert _closed(device) and "INACTIVE" in front.refusals[-1]
    front.stop()


def test_the_trust_store_names_a_presented_certificate_by_its_registry_id(tmp_path: Any) -> None:
    """moto (and a PEM registered by hand) does not derive the id from the DER: the front asks the
    broker's TrustStore, which read each certificate's PEM from the registry anyway."""
    import ssl

    from orchestrator.drill.world import pki
    from orchestrator.drill.world.broker import TrustStore

    pem = pki.device_certificate(THING).cert_pem

    class Listing:
        def get_paginator(self, name: str) -> Any:
            class Pages:
                def paginate(self, **_kw: Any) -> list[dict[str, Any]]:
                    return [{"certificates": [{"certificateId": "moto-id-1", "status": "ACTIVE"}]}]
            return Pages()

        def describe_certificate(self, certificateId: str) -> dict[str, Any]:  # noqa: N803
            return {"certificateDescription": {"certificatePem": pem}}

    store = TrustStore(tmp_path / "trust")
    assert store.refresh(Listing()) == 1
    assert store.identify(ssl.PEM_cert_to_DER_cert(pem)) == "moto-id-1"
    assert store.identify(ssl.PEM_cert_to_DER_cert(pki.device_certificate("other").cert_pem)) is None


def test_assume_role_with_certificate_is_checked_against_the_regions_role_alias_arn() -> None:
    """The credentials provider's action (orchestrator/drill/world/device_services.py): the resource is
    `arn:aws:iot:<region>:<account>:rolealias/<alias>`; a literal other region grants nothing."""
    assert resource_arn(Action.ASSUME_ROLE, me(), "uploads") == f"arn:aws:iot:{WEST}:{ACCOUNT}:rolealias/uploads"
    pinned = parse({"Statement": [{"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate",
                                   "Resource": f"arn:aws:iot:{WEST}:{ACCOUNT}:rolealias/uploads"}]})
    assert evaluate(pinned, Action.ASSUME_ROLE, "uploads", me())
    assert not evaluate(pinned, Action.ASSUME_ROLE, "uploads", me(CENTRAL))
    assert not evaluate(pinned, Action.ASSUME_ROLE, "admin", me())
    assert not evaluate(pinned, Action.CONNECT, "uploads", me())  # an action is not another's


def _relayed(upstream: Upstream, n: int) -> bool:
    import time

    for _ in range(150):
        if len(upstream.packets) >= n:
            return True
        time.sleep(0.02)
    return False


def test_a_policy_detached_mid_connection_refuses_the_next_publish_once_the_cached_copy_is_reread(
        tls: Any) -> None:
    """IoT Core evaluates every publish against its cached copy of the policies ("Changes made to a
    policy can take anywhere between 6 and 8 minutes to become effective"): a copy younger than the
    cache period is kept, an older one is re-read and the detached policy grants nothing more."""
    from orchestrator.drill.world.authfront import certificate_key

    registry = Registry()
    arn = registry.add(certificate_key(tls[2]))
    front, upstream = _front(tls, registry)
    device = _dial(tls, front)
    device.sendall(connect_packet(THING))
    assert device.recv(4) == bytes([0x20, 2, 0, 0])
    registry.attached[arn] = []  # DetachPolicy while the device is connected
    assert front.refresh_policies(3600.0) == 0  # its copy is younger than the cache: kept
    device.sendall(publish_packet(f"buildings/{THING}/telemetry"))
    assert _relayed(upstream, 2)  # still allowed, as in IoT Core within the cache period
    assert front.refresh_policies(0.0) == 1
    device.sendall(publish_packet(f"buildings/{THING}/telemetry"))
    assert _closed(device)
    assert "no attached policy allows iot:Publish" in front.refusals[-1]
    assert len(upstream.packets) == 2
    front.stop()


def test_a_narrower_default_policy_version_mid_connection_drops_deliveries_and_refuses_subscribes(
        tls: Any) -> None:
    from orchestrator.drill.world.authfront import certificate_key

    registry = Registry()
    registry.add(certificate_key(tls[2]))
    front, upstream = _front(tls, registry)
    device = _dial(tls, front)
    device.sendall(connect_packet(THING))
    assert device.recv(4) == bytes([0x20, 2, 0, 0])
    device.sendall(subscribe_packet(f"buildings/{THING}/commands"))
    assert _relayed(upstream, 2)
    # CreatePolicyVersion --set-as-default: publish its own telemetry only, nothing to receive
    registry.documents["device"] = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "iot:Publish",
        "Resource": "arn:aws:iot:*:*:topic/buildings/${iot:Connection.Thing.ThingName}/telemetry"}]})
    assert front.refresh_policies(0.0) == 1
    upstream.conn.sendall(publish_packet(f"buildings/{THING}/commands"))  # no longer Receive-able: dropped
    device.sendall(publish_packet(f"buildings/{THING}/telemetry"))  # still allowed
    assert _relayed(upstream, 3)
    device.sendall(subscribe_packet(f"buildings/{THING}/commands"))
    assert _closed(device)
    assert any("iot:Receive" in r for r in front.refusals)
    assert "no attached policy allows iot:Subscribe" in front.refusals[-1]
    front.stop()


# -- persistent sessions expire as IoT Core's do (orchestrator/drill/world/authfront.py) ----------------------

@pytest.fixture
def mosquitto(tmp_path: Any) -> Any:
    """A real mosquitto, plain listener only: what a region's front door relays to."""
    from orchestrator.drill.world.broker import BrokerSpec, mosquitto_binary
    from orchestrator.drill.world.procs import Processes, free_port, wait_for_port

    spec = BrokerSpec(WEST, "127.0.0.1", 0, free_port(), tmp_path / "broker", tls_listener=False)
    spec.write_config(server_cert="unused", server_key="unused")
    procs = Processes(tmp_path / "logs")
    try:
        proc = procs.start("broker", [mosquitto_binary(), "-c", str(spec.config_path)])
        wait_for_port("127.0.0.1", spec.service_port, 10, proc, "mosquitto")
        yield ("127.0.0.1", spec.service_port)
    finally:
        procs.stop_all()


def _persistent_connect(tls: Any, front: Any) -> tuple[Any, int]:
    """A device resuming its session (MQTT 3.1.1, Clean Session 0): the socket and sessionPresent."""
    device = _dial(tls, front)
    device.sendall(_mqtt(1, _s("MQTT") + bytes([4, 0x00, 0, 60]) + _s(THING)))
    connack = device.recv(4)
    assert connack[:2] == bytes([0x20, 2]) and connack[3] == 0, connack
    return device, connack[2] & 0x01


def _cloud_publishes(broker: tuple[str, int], topic: str, payload: bytes) -> None:
    """The cloud side (a rule, the backend) publishes QoS 1 on the broker and waits for its PUBACK."""
    import socket

    from orchestrator.drill.world.authfront import read_packet

    with socket.create_connection(broker, timeout=5) as cloud:
        cloud.sendall(connect_packet("cloud-backend"))
        assert (read_packet(cloud.recv) or b"")[:1] == b"\x20"
        cloud.sendall(_mqtt(3, _s(topic) + (9).to_bytes(2, "big") + payload, flags=2))
        assert (read_packet(cloud.recv) or b"")[:1] == b"\x40"  # PUBACK: queued for the offline session
        cloud.sendall(bytes([0xE0, 0]))


def _leave(device: Any) -> None:
    device.sendall(bytes([0xE0, 0]))  # DISCONNECT: the session stays on the broker
    device.close()


def _received(device: Any, seconds: float) -> bytes:
    device.settimeout(seconds)
    try:
        return bytes(device.recv(256))
    except TimeoutError:
        return b""


def test_a_persistent_session_not_resumed_within_the_expiry_period_is_gone_with_its_queued_messages(
        tls: Any, mosquitto: Any) -> None:
    """IoT Core's "Persistent session expiry period" (1 hour by default): resumed within it, the
    session is present and its queued QoS 1 messages arrive; resumed after it, sessionPresent is 0
    and the messages queued meanwhile are gone. mosquitto alone keeps the session for ever."""
    import time

    from orchestrator.drill.world.authfront import AuthorisingFront, certificate_key

    registry = Registry()
    registry.add(certificate_key(tls[2]))
    front = AuthorisingFront(Authoriser(registry, WEST, ACCOUNT, custom_domain="iot.example.com"), tls[0],
                             "127.0.0.1", 0, mosquitto).start()
    front.session_expiry_s = 1.0  # the account's hour, on a fast time scale
    commands = f"buildings/{THING}/commands"
    try:
        device, present = _persistent_connect(tls, front)
        assert present == 0  # a new session
        device.sendall(subscribe_packet(commands))
        assert device.recv(5)[:1] == b"\x90"  # SUBACK
        _leave(device)

        _cloud_publishes(mosquitto, commands, b"while-away-briefly")
        device, present = _persistent_connect(tls, front)  # within the expiry period
        assert present == 1
        assert b"while-away-briefly" in _received(device, 3.0)
        _leave(device)

        _cloud_publishes(mosquitto, commands, b"while-away-too-long")
        time.sleep(1.5)  # longer than the expiry period
        device, present = _persistent_connect(tls, front)
        assert present == 0  # the session expired: the device must subscribe again
        assert b"while-away-too-long" not in _received(device, 1.0)
        assert [cid for _, cid in front.expired] == [THING]
        _leave(device)
    finally:
        front.stop()


def test_an_mqtt5_session_expiry_interval_is_read_and_capped_at_the_accounts_period(tls: Any) -> None:
    from orchestrator.drill.world.authfront import PERSISTENT_SESSION_S, AuthorisingFront, Connect, parse_connect

    props = (bytes([0x11]) + (7 * 24 * 3600).to_bytes(4, "big") + bytes([0x21]) + (20).to_bytes(2, "big")
             + bytes([0x26]) + _s("k") + _s("v"))
    packet = _mqtt(1, _s("MQTT") + bytes([5, 0x00, 0, 60, len(props)]) + props + _s(THING))
    assert parse_connect(packet) == Connect(5, THING, clean=False, session_expiry=7 * 24 * 3600)
    front = AuthorisingFront(Authoriser(Registry(), WEST, ACCOUNT), tls[0], "127.0.0.1", 0, ("127.0.0.1", 1))
    assert front._lifetime(parse_connect(packet)) == PERSISTENT_SESSION_S == 3600.0  # the account's hour
    assert front._lifetime(Connect(5, THING, clean=False, session_expiry=60)) == 60.0  # a shorter ask is kept
    assert front._lifetime(Connect(5, THING, clean=True)) == 0.0  # no interval: ends with the connection
    assert front._lifetime(Connect(4, THING, clean=False)) == 3600.0
    assert front._lifetime(Connect(4, THING, clean=True)) == 0.0
