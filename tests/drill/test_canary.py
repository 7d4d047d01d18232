"""The MQTT-level canary: a region whose TCP port answers but whose MQTT refuses is unhealthy."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from orchestrator.drill.canary import METRIC_NAME, probe, tcp_open
from orchestrator.drill.world.procs import free_port
from tests.drill.local_mosquitto import mosquitto


def test_a_working_broker_is_healthy_after_a_full_round_trip(tmp_path: Path) -> None:
    with mosquitto(tmp_path, "allow_anonymous true") as port:
        r = probe("127.0.0.1", port, "iot.example.com", "canary-eu-west-1")
    assert r.healthy and r.stage == "echo", r
    assert r.metric("eu-west-1") == {"MetricName": METRIC_NAME, "Dimensions": [
        {"Name": "Region", "Value": "eu-west-1"}], "Value": 1.0, "Unit": "Count"}


def test_port_open_but_mqtt_refusing_is_unhealthy(tmp_path: Path) -> None:
    # the authoriser refuses every client (as a broken custom authoriser or policy would): TCP answers
    with mosquitto(tmp_path, "allow_anonymous false") as port:
        tcp = tcp_open("127.0.0.1", port)
        r = probe("127.0.0.1", port, "iot.example.com", "canary-eu-west-1")
    assert tcp is True  # what Route 53's TCP check sees: healthy
    assert not r.healthy and r.stage == "connack" and "not authorized" in r.detail, r
    assert r.metric("eu-west-1")["Value"] == 0.0


def test_a_port_that_accepts_and_hangs_up_is_unhealthy() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        try:
            conn, _ = server.accept()
            conn.close()
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        r = probe("127.0.0.1", server.getsockname()[1], "iot.example.com", "c", timeout=2)
    finally:
        server.close()
    assert not r.healthy and r.stage == "connack", r


def test_a_closed_port_is_unhealthy_at_tcp() -> None:
    r = probe("127.0.0.1", free_port(), "iot.example.com", "c", timeout=1)
    assert not r.healthy and r.stage == "tcp"
