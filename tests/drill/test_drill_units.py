"""The drill's pieces without a world: Route 53's selection rules, the RTO model, the report, the CLI's
light `--help` and its refusals."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.console import Console
from orchestrator.drill.model import (
    DeviceOutcome,
    DrillOptions,
    DrillResult,
    Routing,
    Stats,
    StepRecord,
    backoff_schedule,
    percentile,
    project,
)
from orchestrator.drill.report import markdown, svg
from orchestrator.drill.world.dns import RecordSet, Route53Answers, parse_records
from orchestrator.drill.world.route53_model import select as model_select
from tests.doubles import project_copy

PRIMARY = RecordSet("iot.example.com.", "a-ats.iot.eu-west-1.amazonaws.com", 60, "eu-west-1", "PRIMARY",
                    health_check_id="hc-a")
SECONDARY = RecordSet("iot.example.com.", "b-ats.iot.eu-central-1.amazonaws.com", 60, "eu-central-1", "SECONDARY",
                      health_check_id="hc-b")


def far(client: str | None, region: str) -> float:
    return 0.0 if client == region else 1.0


def select(records: list[RecordSet], healthy: Any, client: str | None, nearest: Any) -> RecordSet | None:
    """The model's selection (orchestrator/drill/world/route53_model.py) over the drill's record sets."""
    sets = [r.rrset() for r in records]
    chosen = model_select(sets, healthy, client, nearest)
    return next((r for r, s in zip(records, sets, strict=True) if s is chosen), None)


@pytest.mark.parametrize(("healthy", "expected"), [
    ({"hc-a", "hc-b"}, PRIMARY),  # healthy primary
    ({"hc-b"}, SECONDARY),  # primary unhealthy: the healthy secondary
    (set(), PRIMARY),  # none healthy: all count as healthy, so the primary
    ({"hc-a"}, PRIMARY),
])
def test_failover_selection_follows_route53(healthy: set[str], expected: RecordSet) -> None:
    assert select([SECONDARY, PRIMARY], lambda c: c in healthy, None, far) == expected


def test_a_record_without_health_check_counts_healthy() -> None:
    unchecked = RecordSet(PRIMARY.name, PRIMARY.value, 60, "eu-west-1", "PRIMARY")
    assert select([unchecked, SECONDARY], lambda c: False, None, far) == unchecked


def test_latency_selection_nearest_healthy() -> None:
    west = RecordSet("iot.example.com.", "a", 60, "eu-west-1", region="eu-west-1", health_check_id="hc-a")
    central = RecordSet("iot.example.com.", "b", 60, "eu-central-1", region="eu-central-1", health_check_id="hc-b")
    both = {"hc-a", "hc-b"}
    assert select([west, central], lambda c: c in both, "eu-central-1", far) == central
    assert select([west, central], lambda c: c == "hc-a", "eu-central-1", far) == west  # nearest is down
    assert select([west, central], lambda c: False, "eu-central-1", far) == central  # none healthy: all count


class _Zone:
    """Route 53 as the DNS program leaves it with `failover_control: arc`: each record's check is a
    CALCULATED gate over the region's TCP check and its RECOVERY_CONTROL check (moto's shapes)."""

    def __init__(self) -> None:
        self.checks = {
            "gate-a": {"Type": "CALCULATED", "ChildHealthChecks": ["tcp-a", "rc-a"], "HealthThreshold": 2},
            "gate-b": {"Type": "CALCULATED", "ChildHealthChecks": ["tcp-b", "rc-b"], "HealthThreshold": 2},
            "tcp-a": {"Type": "TCP", "FullyQualifiedDomainName": "a", "Port": 443, "RequestInterval": 30,
                      "FailureThreshold": 3},
            "tcp-b": {"Type": "TCP", "FullyQualifiedDomainName": "b", "Port": 443, "RequestInterval": 30,
                      "FailureThreshold": 3},
            "rc-a": {"Type": "RECOVERY_CONTROL", "Port": 80},  # moto keeps no RoutingControlArn
            "rc-b": {"Type": "RECOVERY_CONTROL", "Port": 80},
        }
        self.read: list[str] = []

    def list_resource_record_sets(self, HostedZoneId: str) -> dict:  # noqa: N803 - boto3's names
        return {"ResourceRecordSets": [
            {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60, "SetIdentifier": "primary",
             "Failover": "PRIMARY", "HealthCheckId": "gate-a", "ResourceRecords": [{"Value": "a"}]},
            {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60, "SetIdentifier": "secondary",
             "Failover": "SECONDARY", "HealthCheckId": "gate-b", "ResourceRecords": [{"Value": "b"}]}]}

    def get_health_check(self, HealthCheckId: str) -> dict:  # noqa: N803
        self.read.append(HealthCheckId)
        return {"HealthCheck": {"HealthCheckConfig": self.checks[HealthCheckId]}}


def test_arc_gates_answer_by_routing_control_and_tcp_check_together() -> None:
    controls = {"rc-a": "On", "rc-b": "On"}
    zone = _Zone()
    answers = Route53Answers(zone, "Z1", "iot.example.com", {"a": "127.0.0.2", "b": "127.0.0.3"}, 1, 1.0, far,
                             control_state=controls.get)
    try:
        assert answers.answer(None)[0] == "a"  # both controls On, TCP checks start healthy
        assert sorted(zone.read) == ["gate-a", "gate-b", "rc-a", "rc-b", "tcp-a", "tcp-b"]  # children followed
        controls["rc-a"] = "Off"  # `failover` turned the primary's control Off: its gate fails
        assert answers.answer(None)[0] == "b"
        controls["rc-a"], controls["rc-b"] = "On", "Off"
        assert answers.answer(None)[0] == "a"
        answers._checkers[0].checks["tcp-a"].healthy = False  # the primary's endpoint stopped answering
        assert answers.answer(None)[0] == "a"  # no gate healthy: all count as healthy, so the PRIMARY
        controls["rc-b"] = "On"
        assert answers.answer(None)[0] == "b"
    finally:
        answers.stop()


def test_parse_records_keeps_the_domains_cnames_only() -> None:
    listing = [
        {"Name": "iot.example.com.", "Type": "CNAME", "TTL": 60, "SetIdentifier": "eu-west-1", "Failover": "PRIMARY",
         "HealthCheckId": "hc-a", "ResourceRecords": [{"Value": "a-ats.iot.eu-west-1.amazonaws.com"}]},
        {"Name": "other.example.com.", "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "x"}]},
        {"Name": "example.com.", "Type": "NS", "TTL": 60, "ResourceRecords": [{"Value": "ns"}]},
    ]
    assert parse_records(listing, "iot.example.com") == [PRIMARY]


def test_percentile_nearest_rank() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 50) == 50.0 and percentile(values, 95) == 95.0 and percentile([3.0], 95) == 3.0
    assert Stats.of([]) == Stats(None, None, None)


def test_backoff_schedule_is_bounded_full_jitter() -> None:
    import random

    times = backoff_schedule(random.Random(1), 600)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[0] == 0 and times[-1] >= 600
    assert all(0 <= g <= 120 for g in gaps) and all(g <= 2 ** k for k, g in enumerate(gaps))


def test_projection_components_and_route53_values() -> None:
    p = project()
    assert p.detection == pytest.approx(75.0, abs=1.0)  # (3 - 0.5) x 30 s on average
    assert p.ttl_wait.max is not None and p.ttl_wait.max <= 60
    assert p.rto.p50 is not None and p.rto.p95 is not None and p.rto.p50 >= 60 and p.rto.p95 >= p.rto.p50
    faster = project(interval=10.0)
    assert faster.rto.p50 is not None and faster.rto.p50 < p.rto.p50


def _result(**changes: object) -> DrillResult:
    device = DeviceOutcome("d0", "eu-west-1", "eu-west-1", "eu-central-1", True, 5.0, 3.0, 1.0, 1.0, 3, 20, 20, 0, 0,
                           1, False, False, True)
    base = dict(options=DrillOptions(devices=1, routing=Routing.FAILOVER), env="dev", domain="iot.example.com",
                regions=("eu-west-1", "eu-central-1"), killed="eu-west-1", survivor="eu-central-1", started=0.0,
                killed_at=10.0, detected_at=13.0, dns_changed_at=13.5, all_back_at=15.0, devices=(device,),
                steps=(StepRecord("failover", True, 2.0, "dns: done"),), health=(), dns=(),
                samples=((9.0, {"eu-west-1": 1}, {"eu-west-1": 2}), (16.0, {"eu-central-1": 1}, {"eu-central-1": 2})),
                refused_unregistered=True, scaled={"health_check_interval_s": 3, "failure_threshold": 3, "ttl_s": 6})
    base.update(changes)
    return DrillResult(**base)  # type: ignore[arg-type]


def test_report_says_what_happened() -> None:
    md = markdown(_result(), "timeline.svg")
    assert md.splitlines()[0] == "# Game day: eu-west-1 goes dark (PASS)"
    assert "**1/1** devices connected to eu-west-1 reconnected to **eu-central-1**" in md
    assert "**0 lost**" in md and "| RTO | 5.00 s | 5.00 s | 5.00 s |" in md
    assert "refused by eu-central-1" in md and "![timeline](timeline.svg)" in md


def test_report_says_where_the_device_whose_attach_policy_the_sync_missed_got_in() -> None:
    md = markdown(_result(unattached={"eu-west-1": "accepted", "eu-central-1": "refused: not authorized"},
                          refused_unattached=True))
    assert ("after the last registry sync (the sync missed that AttachPolicy): eu-west-1 accepted; "
            "eu-central-1 refused: not authorized.") in md
    assert "AttachPolicy" not in markdown(_result())  # a result without the probe says nothing of it


def test_a_lost_message_or_a_device_left_behind_fails_the_drill() -> None:
    left = DeviceOutcome("d1", "eu-west-1", "eu-west-1", None, True, None, None, None, None, 9, 20, 18, 2, 1, 0,
                         None, None, False)
    result = _result(devices=(left,))
    assert not result.ok
    assert "(FAIL)" in markdown(result).splitlines()[0]


def test_timeline_picture_marks_the_events() -> None:
    root = ET.fromstring(svg(_result()))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for label in ("kill", "detected", "DNS change", "all reconnected", "eu-west-1", "eu-central-1"):
        assert label in texts, label


def test_help_stays_light() -> None:
    probe = ("import sys; sys.argv=['orchestrate','drill','--help']\n"
             "from orchestrator.cli.main import cli\n"
             "try:\n    cli.main(standalone_mode=False)\nexcept SystemExit:\n    pass\n"
             "heavy=[m for m in sys.modules if m.split('.')[0] in ('awscrt','awsiot','dnslib','cryptography','moto',"
             "'boto3','pulumi')]\nprint('HEAVY=' + ','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "--local" in proc.stdout and "--devices" in proc.stdout
    assert proc.stdout.rstrip().endswith("HEAVY=")


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_copy(tmp_path, monkeypatch)


def test_missing_mosquitto_is_one_clear_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.drill.world import broker

    _project(tmp_path, monkeypatch)
    monkeypatch.setattr(broker.shutil, "which", lambda _name: None)
    monkeypatch.setattr(broker, "KNOWN_PATHS", ())
    err: list[str] = []
    result = CliRunner().invoke(cli, ["drill", "--local", "--devices", "2"], obj=Deps(console=Console(
        out=lambda _t: None, err=err.append)))
    assert result.exit_code == 2
    assert "needs the mosquitto MQTT broker" in "".join(err) and "apt-get install -y mosquitto" in "".join(err)
    assert not (tmp_path / ".orchestrate" / "drills").exists()


def test_real_account_drill_refuses_before_touching_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _project(tmp_path, monkeypatch)
    err: list[str] = []
    result = CliRunner().invoke(cli, ["drill", "--devices", "2"], obj=Deps(console=Console(
        out=lambda _t: None, err=err.append)))
    assert result.exit_code == 2 and "no secondary region" in "".join(err)  # dev is single-region


class _Future:
    def add_done_callback(self, fn: object) -> None:
        return None


class _Client:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []

    def subscribe(self, packet: object) -> _Future:
        return _Future()

    def publish(self, packet: object) -> _Future:
        import json as _json

        self.sent.append((packet.topic, _json.loads(packet.payload)))  # type: ignore[attr-defined]
        return _Future()


class _Packet:
    def __init__(self, topic: str, body: dict[str, object]) -> None:
        import json as _json

        self.topic, self.payload = topic, _json.dumps(body).encode()


class _Received:
    def __init__(self, topic: str, body: dict[str, object]) -> None:
        self.publish_packet = _Packet(topic, body)


def test_device_measures_its_shadow_on_arrival_and_reports_it_back() -> None:
    from orchestrator.drill.world.fleet import Device
    from orchestrator.drill.world.pki import KeyPair

    region = {"now": "eu-west-1"}
    d = Device("t1", KeyPair("c", "k"), "eu-west-1", "ca", "iot.example.com", 8883, ("127.0.0.1", 1),
               lambda _dev: region["now"])
    client = _Client()
    d._client = client
    base = "$aws/things/t1/shadow"
    d._on_connected()
    d._on_publish(_Received(f"{base}/get/accepted", {"state": {"desired": {"mode": "drill"}}}))
    assert d.log.desired == {"mode": "drill"} and client.sent[-1][0] == f"{base}/update"
    d.seq = 7
    d._on_publish(_Received(f"{base}/update/accepted", {"state": {"reported": {"seq": 7, "mode": "drill"}}}))
    assert d.log.last_report_accepted == 7
    d._on_disconnected()
    region["now"] = "eu-central-1"
    d._on_connected()  # the new region holds no shadow: neither reported nor desired found
    d._on_publish(_Received(f"{base}/get/rejected", {"code": 404}))
    assert d.log.arrivals[-1][1:] == ("eu-central-1", False, False)
    assert client.sent[-1][1]["state"] == {"reported": {"seq": 7, "mode": "drill"}}  # re-reported there
    d._on_connected()  # a shadow holding both is found
    d._on_publish(_Received(f"{base}/get/accepted", {"state": {"reported": {"seq": 7}, "desired": {"mode": "drill"}}}))
    assert d.log.arrivals[-1][1:] == ("eu-central-1", True, True)


def test_projection_components_add_up_and_ttl_never_exceeds_the_ttl() -> None:
    p = project(interval=3.0, ttl=6.0, samples=500)
    assert p.ttl_wait.max is not None and p.ttl_wait.max <= 6.0
    assert p.rto.p50 is not None and p.backoff.p50 is not None and p.rto.p50 >= p.backoff.p50


def test_trust_store_names_certificates_as_openssls_hash_directory_expects(tmp_path: Path) -> None:
    from orchestrator.drill.world import pki
    from orchestrator.drill.world.broker import TrustStore, subject_hash

    class Registry:  # the two calls TrustStore makes, with IoT's shapes
        def __init__(self) -> None:
            self.certs: dict[str, str] = {}

        def get_paginator(self, name: str) -> Any:
            assert name == "list_certificates"
            certs = self.certs

            class Pages:
                def paginate(self, **_kw: Any) -> list[dict[str, Any]]:
                    return [{"certificates": [{"certificateId": i, "status": "ACTIVE"} for i in certs]}]
            return Pages()

        def describe_certificate(self, certificateId: str) -> dict[str, Any]:  # noqa: N803
            return {"certificateDescription": {"certificatePem": self.certs[certificateId]}}

    a, b, other = pki.device_certificate("dev-1"), pki.device_certificate("dev-1"), pki.device_certificate("dev-2")
    assert subject_hash(a.cert_pem) == subject_hash(b.cert_pem) != subject_hash(other.cert_pem)
    registry, store = Registry(), TrustStore(tmp_path / "trust")
    registry.certs["c1"] = a.cert_pem
    assert store.refresh(registry) == 1
    registry.certs.update(c2=b.cert_pem, c3=other.cert_pem)  # registered later: added, nothing rewritten
    assert store.refresh(registry) == 2 and store.refresh(registry) == 0
    h = subject_hash(a.cert_pem)
    assert sorted(p.name for p in store.directory.iterdir()) == sorted(
        [f"{h}.0", f"{h}.1", f"{subject_hash(other.cert_pem)}.0"])
    assert len(h) == 8 and int(h, 16) >= 0


def test_a_port_whose_last_connections_are_in_time_wait_is_free_and_a_listened_one_is_not() -> None:
    # the drill's front door closes connections first: its port at that address is then in TIME_WAIT,
    # and the next drill must still take 443 (servers bind with SO_REUSEADDR)
    import socket

    from orchestrator.drill.world.procs import free_port, port_free_on

    host, port = "127.0.0.9", free_port()
    server = socket.create_server((host, port))
    client = socket.create_connection((host, port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: TIME_WAIT on (host, port)
    client.close()
    server.close()
    assert port_free_on([host], port)
    with socket.create_server((host, port)):
        assert not port_free_on([host], port)
