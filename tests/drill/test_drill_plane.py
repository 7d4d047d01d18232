"""The device-management plane in the survivor after a failover (issue 26, "Done when"), shown by a
small `drill --local`: a device with only a claim certificate provisions itself there and connects
with its new certificate, a device gets working AWS credentials through the role alias, and the job
that had succeeded on 60 % of its targets in the primary completes for the other 40 % there with no
device running it twice. Plus the tallies and report lines they are read with."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.drill.model import CredentialsDemo, DemoStatus, JobDemo, ProvisionDemo
from orchestrator.drill.plane_demo import ROLLOUT, JobRun, succeed_count, tally_job
from orchestrator.drill.report import markdown
from orchestrator.drill.run import DrillOutcome
from tests.doubles import project_copy
from tests.drill.test_drill_units import _result


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_copy(tmp_path, monkeypatch)


def test_drill_shows_provisioning_credentials_and_the_job_in_the_survivor(project: Path) -> None:
    from tests.drill.test_drill_local import _drill

    code, doc, err = _drill(project, "--devices", "5", "--routing", "failover")
    assert code == 0, (err[-3000:], doc.get("summary"), doc.get("steps"),
                       [{k: d[k] for k in ("thing", "after", "rto", "lost")} for d in doc.get("devices", [])])
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
                                       "job": {"status": "ok", "why": "", "targets": 5, "succeeded_before": 3,
                                               "completed_after": 2, "executed_twice": 0}}
    md = Path(doc["files"]["markdown"]).read_text()
    assert "## The device-management plane in eu-central-1" in md
    assert "3/5 targets had SUCCEEDED in eu-west-1 before the kill (1 in progress); **2** completed in " \
           f"eu-central-1 as `{job['carried_as']}` after the failover carried it; **0** devices ran it twice" in md
    assert "Provisioning by claim: **ok**" in md and "Credentials provider: **ok**" in md
    # no secret reaches the report
    assert "secretAccessKey" not in md and "sessionToken" not in Path(doc["files"]["json"]).read_text()


# -- the tallies and the report, without the world ------------------------------------------------

W, C = "eu-west-1", "eu-central-1"
TARGETS = ("a", "b", "c", "d", "e")


def _done(t: float, thing: str, region: str, job: str = "drill-ota", status: str = "SUCCEEDED") -> JobRun:
    return JobRun(t, thing, region, job, ROLLOUT, status)


def test_sixty_percent_before_the_kill_leaves_at_least_one_target() -> None:
    assert [succeed_count(n) for n in (1, 2, 3, 4, 5, 10)] == [0, 1, 2, 2, 3, 6]


def test_the_job_tally_counts_what_ran_where_from_the_devices_logs() -> None:
    runs = [_done(1, t, W) for t in "abc"] + [_done(2, "d", W, status="IN_PROGRESS")]
    runs += [_done(12, "d", C, "drill-ota-81f70055", "IN_PROGRESS"), _done(12, "d", C, "drill-ota-81f70055"),
             _done(13, "e", C, "drill-ota-81f70055")]
    demo = tally_job(runs, TARGETS, W, C, killed_at=10)
    assert demo == JobDemo(DemoStatus.OK, "", "drill-ota", "drill-ota-81f70055", 5, 3, 1, 2, 0, 0)


def test_a_device_that_installs_the_rollout_twice_fails_the_job_whatever_the_job_id() -> None:
    runs = [_done(1, t, W) for t in "abc"]
    runs += [_done(12, t, C, "drill-ota-81f70055") for t in "ade"]  # a succeeded in the primary already
    demo = tally_job(runs, TARGETS, W, C, killed_at=10)
    assert demo.status is DemoStatus.FAILED and demo.executed_twice == 1
    assert demo.why == "1 devices ran drill-ota-2 twice"


def test_targets_left_unfinished_fail_the_job_and_say_where_it_stopped() -> None:
    demo = tally_job([_done(1, t, W) for t in "abc"], TARGETS, W, C, killed_at=10)
    assert demo.status is DemoStatus.FAILED and demo.never_completed == 2
    assert demo.why == "2 of 5 targets never completed the job (3 in the primary, 0 in the survivor, " \
                       "no carried job found there)"


OK_DEMOS = dict(provisioned_in_survivor=ProvisionDemo(DemoStatus.OK, "", "accepted", "drill-provisioned-0001", "c1",
                                                      "accepted"),
                role_alias_credentials=CredentialsDemo(DemoStatus.OK, "", "d0", "drill-uploads",
                                                       "arn:aws:sts::1:assumed-role/drill-iot-uploads/c"),
                job=JobDemo(DemoStatus.OK, "", "drill-ota", "drill-ota-1", 5, 3, 1, 2, 0, 0))


def test_a_failed_demo_fails_the_drill_and_says_why_in_one_line() -> None:
    assert _result(**OK_DEMOS).ok
    refused = CredentialsDemo(DemoStatus.FAILED, "the credentials provider refused: 404 ResourceNotFoundException: "
                                                 "role alias drill-uploads does not exist in eu-central-1",
                              "d0", "drill-uploads")
    result = _result(**{**OK_DEMOS, "role_alias_credentials": refused})
    assert not result.ok  # exit 1: the command raises Reported(FAILED) when the outcome is not ok
    md = markdown(result)
    assert md.splitlines()[0].endswith("(FAIL)")
    assert "- Credentials provider: **FAILED**: d0 asked eu-central-1 for credentials through the role alias " \
           "`drill-uploads`. Why: the credentials provider refused: 404 ResourceNotFoundException: role alias " \
           "drill-uploads does not exist in eu-central-1." in md
    lines = DrillOutcome(result, {}).summary_lines()
    assert "  role alias credentials in eu-central-1: failed: the credentials provider refused: 404 " \
           "ResourceNotFoundException: role alias drill-uploads does not exist in eu-central-1" in lines
    doc = result.to_json()
    assert doc["summary"]["ok"] is False
    assert doc["summary"]["plane"]["role_alias_credentials"] == {"status": "failed", "why": refused.why}
    assert doc["role_alias_credentials"]["status"] == "failed"
    assert doc["summary"]["plane"]["job"] == {"status": "ok", "why": "", "targets": 5, "succeeded_before": 3,
                                              "completed_after": 2, "executed_twice": 0}


def test_a_skipped_job_fails_nothing_and_says_why() -> None:
    skipped = JobDemo(DemoStatus.SKIPPED, "--no-transitions: in-flight jobs move with failover's carry-jobs step, "
                                          "which did not run", "drill-ota", targets=5)
    result = _result(**{**OK_DEMOS, "job": skipped})
    assert result.ok
    assert f"- Job `drill-ota`: skipped: {skipped.why}." in markdown(result)
    assert f"  job drill-ota: skipped: {skipped.why}" in DrillOutcome(result, {}).summary_lines()


def test_the_summary_lines_give_the_job_counts() -> None:
    lines = DrillOutcome(_result(**OK_DEMOS), {}).summary_lines()
    assert "  provisioned by claim in eu-central-1: ok (drill-provisioned-0001 connected with its new certificate)" \
        in lines
    assert "  job drill-ota: ok, 3/5 succeeded in eu-west-1 before the kill, 2 completed in eu-central-1 after, " \
           "0 executed twice" in lines
    assert "device-management plane" not in markdown(_result())  # a result without the demos says nothing


def test_certificates_the_world_issues_verify_under_its_issuing_ca() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from orchestrator.drill.world.iot_issuer import SUBJECT_CN, issue, issuing_ca_pem

    pem, pair = issue()
    cert = x509.load_pem_x509_certificate(pem.encode())
    ca = x509.load_pem_x509_certificate(issuing_ca_pem().encode())
    assert cert.issuer == ca.subject and cert.subject.rfc4514_string() == f"CN={SUBJECT_CN}"
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca)  # raises when the signature is not the CA's
    device_key = cert.public_key()
    assert isinstance(device_key, rsa.RSAPublicKey) and device_key.key_size == 2048  # as AWS issues them
    assert "PRIVATE KEY" in pair["PrivateKey"]
