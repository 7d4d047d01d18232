"""A small game day end to end: `orchestrate drill --local` with a handful of devices.

Real mosquitto brokers, the DNS server, the devices on awscrt and a moto server, all started and
stopped by the command. Asserts what a user would notice: every device on the killed region comes
back in the surviving one, no QoS 1 message is lost, the shadows are there, the certificate that was
never synced is refused, the report and the picture are written, and nothing keeps running.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import Deps
from orchestrator.cli.main import cli
from orchestrator.console import Console
from tests.doubles import project_copy


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_copy(tmp_path, monkeypatch)


def _children() -> list[str]:
    """Live (non-zombie) child processes of this test process."""
    me, found = str(os.getpid()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == me and not fields.get("State", "").startswith("Z"):
            found.append(f"{entry.name} {fields.get('Name', '').strip()}")
    return found


def _drill(project: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out: list[str] = []
    err: list[str] = []
    deps = Deps(console=Console(out=out.append, err=err.append))
    before = _children()
    result = CliRunner().invoke(cli, ["drill", "--local", "--time-scale", "0.034", "--duration", "40",
                                      "--output", str(project / "report"), "--json", *args], obj=deps,
                                catch_exceptions=False)
    assert _children() == before, "the drill left processes running"
    assert not [t.name for t in threading.enumerate() if t.name.startswith("drill-")], "drill threads left"
    doc = json.loads("".join(out)) if out else {}
    return result.exit_code, doc, "".join(err)


def test_failover_drill_every_device_reconnects_nothing_lost(project: Path) -> None:
    code, doc, err = _drill(project, "--devices", "4", "--routing", "failover")
    assert code == 0, err[-2000:]
    devices = doc["devices"]
    assert len(devices) == 4
    for d in devices:  # every device was on the primary and is now on the secondary
        assert d["before"] == "eu-west-1" and d["after"] == "eu-central-1", d
        assert d["rto"] is not None and d["lost"] == 0 and d["published"] > 10
        # the measured components add up to the observed RTO
        assert abs(d["detection"] + d["ttl"] + d["backoff"] - d["rto"]) < 1e-6
        assert d["shadow_restored"] is True
        # landed, not just acknowledged: counted against the region whose broker sent the PUBACK
        assert d["landed_where_acked"] > 0 and d["acked_never_landed"] == 0, d
        # measured on arrival (what the survivor held depends on shadow replication, issue 12)
        assert isinstance(d["shadow_reported_found"], bool) and isinstance(d["shadow_desired_found"], bool)
    assert doc["refused_unregistered"] is True  # the certificate registered after the sync is refused
    # every connection goes through the region's IoT front door: the device whose AttachPolicy the
    # promotion's sync missed gets in where its policy is attached and not where it is missing
    # (mosquitto alone would accept it in both)
    assert doc["unattached"] == {"eu-west-1": "accepted", "eu-central-1": "refused: not authorized"}
    assert doc["refused_unattached"] is True
    assert [s["operation"] for s in doc["steps"]][:4] == [
        "promote-secondary", "failover", "late certificate trusted after the final sync", "failback"]
    assert all(s["ok"] for s in doc["steps"])
    assert doc["detected_at"] > doc["killed_at"]
    # every connection attempt passed IoT Core's CONNECT quotas at the region's door (admission.py)
    assert doc["admission"]["eu-central-1"]["admitted"] >= 4 and doc["admission"]["eu-west-1"]["admitted"] >= 4
    md = Path(doc["files"]["markdown"]).read_text()
    assert "PASS" in md.splitlines()[0] and "| RTO |" in md and "Route 53's real intervals" in md
    svg = ET.parse(doc["files"]["picture"]).getroot()
    assert svg.tag.endswith("svg") and len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) == 4
    # the brokers listened where IoT Core does and the health checks probe (443) when the drill may
    # bind it, and no longer listen
    port = doc["scaled"]["tls_port"]
    assert port == 443 or os.geteuid() != 0
    for address in ("127.0.0.2", "127.0.0.3"):
        with socket.socket() as s:
            s.settimeout(0.5)
            assert s.connect_ex((address, port)) != 0


def test_latency_drill_moves_only_the_devices_of_the_dead_region(project: Path) -> None:
    code, doc, err = _drill(project, "--devices", "4", "--routing", "latency", "--kill", "eu-central-1",
                            "--no-transitions")
    assert code == 0, err[-2000:]
    by_location: dict[str, list[dict[str, Any]]] = {}
    for d in doc["devices"]:
        by_location.setdefault(d["location"], []).append(d)
        assert d["before"] == d["location"]  # latency routing: each device starts on its nearest region
        assert d["lost"] == 0
    assert all(d["moved"] and d["after"] == "eu-west-1" and d["rto"] is not None
               for d in by_location["eu-central-1"])
    assert all(not d["moved"] and d["after"] == "eu-west-1" and d["rto"] is None for d in by_location["eu-west-1"])


def test_arc_drill_moves_traffic_with_routing_controls(project: Path) -> None:
    code, doc, err = _drill(project, "--devices", "3", "--routing", "failover", "--failover-control", "arc")
    assert code == 0, err[-2000:]
    assert doc["control"] == "arc"
    for d in doc["devices"]:
        assert d["before"] == "eu-west-1" and d["after"] == "eu-central-1" and d["lost"] == 0, d
        assert abs(d["detection"] + d["ttl"] + d["backoff"] - d["rto"]) < 1e-6
    steps = {s["operation"]: s for s in doc["steps"]}
    assert all(s["ok"] for s in doc["steps"]), doc["steps"]
    # traffic moved through the ARC data plane (the step named `routing-controls`), not records
    for operation in ("failover", "failback"):
        assert "routing-controls: done" in steps[operation]["detail"], steps[operation]
        assert "dns:" not in steps[operation]["detail"]
    assert steps["new connections after failback"]["ok"]


def test_kill_outside_the_drill_regions_is_bad_input_and_starts_nothing(project: Path) -> None:
    code, doc, err = _drill(project, "--kill", "us-east-2")
    assert code == 2 and "--kill us-east-2" in err
    assert not (project / "report").exists()


def _processes_in(directory: Path) -> list[str]:
    """Processes whose working directory or command line is inside `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory) in cmd:
            found.append(f"{entry.name}: {cmd[:120]}")
    return found


def test_ctrl_c_stops_every_process_of_the_world(project: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = project / "report"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "drill", "--local", "--devices", "2",
                             "--time-scale", "0.034", "--output", str(out)], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # wait until the brokers are up and the devices connect
            if "devices connecting" in line or time.monotonic() > deadline:
                break
        assert len([p for p in _processes_in(out) if "mosquitto" in p]) == 2, _processes_in(out)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130
    assert _processes_in(out) == []
