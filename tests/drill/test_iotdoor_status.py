"""The front door's certificate-status answers (orchestrator/drill/world/iotdoor.py) when its listing
is older than a registration: a certificate registered, and its device connected, after the watch's
last ListCertificates must be neither refused on its first publish nor closed as unknown."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrator.drill.world.broker import TrustStore
from orchestrator.drill.world.iotdoor import RegionDoor


class Iot:
    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.described: list[str] = []

    def describe_certificate(self, certificateId: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.described.append(certificateId)
        if certificateId not in self.statuses:
            raise RuntimeError("An error occurred (ResourceNotFoundException) when calling DescribeCertificate")
        return {"certificateDescription": {"certificateId": certificateId, "status": self.statuses[certificateId]}}


def door(tmp_path: Path, iot: Iot, listed: dict[str, str]) -> RegionDoor:
    d = RegionDoor("eu-west-1", "127.0.0.1", 0, ("127.0.0.1", 1), domain="iot.example.com",
                   cert_file=tmp_path / "c", key_file=tmp_path / "k", trust=TrustStore(tmp_path / "t"),
                   iot=iot, account="123456789012")
    d._statuses, d._read_at = listed, time.monotonic()  # the watch's listing, read just now
    return d


def test_a_certificate_the_listing_does_not_name_is_asked_about_not_refused(tmp_path: Path) -> None:
    iot = Iot({"old": "ACTIVE", "new": "ACTIVE"})
    d = door(tmp_path, iot, {"old": "ACTIVE", "off": "INACTIVE"})
    assert d.status_of("old") == "ACTIVE" and d.status_of("off") == "INACTIVE"
    assert d.status_of("new") is None  # registered after the listing: the authoriser reads the registry


def test_the_watch_closes_only_what_is_not_active_asking_about_what_it_did_not_list(tmp_path: Path) -> None:
    iot = Iot({"old": "ACTIVE", "new": "ACTIVE", "off": "INACTIVE"})
    d = door(tmp_path, iot, {"old": "ACTIVE", "off": "INACTIVE"})
    listed = {"old": "ACTIVE", "off": "INACTIVE"}
    assert d._gone("old", listed) is None and d._gone("off", listed) == "INACTIVE"
    assert d._gone("new", listed) is None and iot.described == ["new"]
    assert d._gone("deleted", listed) == "NOT_REGISTERED"
