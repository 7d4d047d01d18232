"""The device-management plane in the survivor after a failover (issue 26, "Done when"), shown by a
small `drill --local`: a device with only a claim certificate provisions itself there and connects
with its new certificate, a device gets working AWS credentials through the role alias, and the job
that had succeeded on 60 % of its targets in the primary completes for the other 40 % there with no
device running it twice. Plus the tallies and report lines they are read with."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doubles import project_copy


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_copy(tmp_path, monkeypatch)


def test_drill_shows_provisioning_credentials_and_the_job_in_the_survivor(project: Path) -> None:
    from tests.drill.test_drill_local import _drill

    code, doc, err = _drill(project, "--devices", "5", "--routing", "failover")
    assert code == 0, err[-3000:]
    provisioned = doc["provisioned_in_survivor"]
    assert provisioned["status"] == "ok", provisioned
    assert provisioned["claim_connect"] == "accepted" and provisioned["connect"] == "accepted"
    assert provisioned["thing"] == "drill-provisioned-0001" and provisioned["certificate_id"]
    creds = doc["role_alias_credentials"]
    assert creds["status"] == "ok", creds
    assert ":assumed-role/drill-iot-uploads/" in creds["caller_arn"]
    job = doc["job"]
    assert job["status"] == "ok", job
    assert (job["targets"], job["succeeded_before"], job["completed_after"]) == (5, 3, 2), job
    assert job["executed_twice"] == 0 and job["never_completed"] == 0
    assert job["in_progress_at_kill"] == 1  # one device was installing when the region died
    assert job["carried_as"] and job["carried_as"].startswith("drill-ota-")
    assert doc["summary"]["plane"] == {"provisioned_in_survivor": {"status": "ok", "why": ""},
                                       "role_alias_credentials": {"status": "ok", "why": ""},
                                       "job": {"status": "ok", "why": ""}}
    md = Path(doc["files"]["markdown"]).read_text()
    assert "## The device-management plane in eu-central-1" in md
    assert "3/5 targets had SUCCEEDED in eu-west-1 before the kill (1 in progress); **2** completed in " \
           f"eu-central-1 as `{job['carried_as']}` after the failover carried it; **0** devices ran it twice" in md
    assert "Provisioning by claim: **ok**" in md and "Credentials provider: **ok**" in md
    # no secret reaches the report
    assert "secretAccessKey" not in md and "sessionToken" not in Path(doc["files"]["json"]).read_text()
