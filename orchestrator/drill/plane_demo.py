"""The device-management plane in the survivor, shown by `drill --local` (issue 26, "Done when").

Set up in the primary before the promotion (so the promotion's registry sync carries what it
carries, and nothing is put in the secondary by hand): a provisioning template, a claim certificate
with its claim policy, an IAM role trusting the credentials provider and a role alias naming it,
and a job targeting the devices of the region that will die. After the failover, against the
survivor:

a. provisioning by claim: a factory-fresh device connects to the survivor's front door with its
   claim certificate, runs CreateKeysAndCertificate and RegisterThing with the template at the
   survivor's fleet-provisioning service (device_services.FleetProvisioning, deciding each request
   with the same authoriser as the door), then connects through the front door with its new
   certificate, under the thing name the template gave it;
b. the credentials provider: a device asks the survivor for credentials through the role alias
   (device_services.CredentialsProvider) and signs STS GetCallerIdentity with them;
c. the job: before the kill, `SUCCEED_SHARE` of its targets run it to SUCCEEDED in the primary and
   one more starts it (IN_PROGRESS when the region dies); after the failover (whose carry-jobs step
   moves the unfinished part) every target asks the jobs data plane of the region it is connected
   to for its next job and runs what it gets. The devices' own logs say what ran where: a device
   that ran the job's document to SUCCEEDED twice is counted, whatever the job id.

What is not the real thing, said plainly: the devices call the provisioning and credentials
services in-process (AWS: MQTT topics and an HTTPS endpoint, both authenticated by the device's
certificate, which here the front door checks at CONNECT and the services check by certificate id),
and the jobs data plane over its HTTPS API (`iot-jobs-data`, signed as moto requires; AWS also
accepts the device certificate). The decisions (which certificate, which policy, which region holds
what) are the local world's, which reads only the asked region's registry.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.drill.model import CredentialsDemo, DemoStatus, JobDemo, ProvisionDemo

TEMPLATE = "drill-fleet"
CLAIM_POLICY = "drill-claim-policy"
CLAIM_CLIENT = "drill-claim-0001"  # the factory-fresh device's client id while it holds the claim certificate
SERIAL = "0001"
PROVISIONED_PREFIX = "drill-provisioned-"
ROLE = "drill-iot-uploads"
ROLE_ALIAS = "drill-uploads"
JOB = "drill-ota"
ROLLOUT = "drill-ota-2"  # the job document's own id: what a device recognises as "already installed"
SUCCEED_SHARE = 0.6  # of the job's targets, SUCCEEDED in the primary before the kill
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "credentials.iot.amazonaws.com"}}]}


def claim_policy() -> str:
    """What a claim certificate may do: connect as a claim client, ask for keys, register with the
    template; region `*` (a policy pinned to the primary grants nothing in the secondary)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/drill-claim-*"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": [
            "arn:aws:iot:*:*:topic/$aws/certificates/create/json",
            f"arn:aws:iot:*:*:topic/$aws/provisioning-templates/{TEMPLATE}/provision/json"]}]})


def template_body(device_policy: str) -> str:
    return json.dumps({
        "Parameters": {"SerialNumber": {"Type": "String"}, "AWS::IoT::Certificate::Id": {"Type": "String"}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing", "Properties": {
                "ThingName": {"Fn::Join": ["", [PROVISIONED_PREFIX, {"Ref": "SerialNumber"}]]},
                "AttributePayload": {"serial": {"Ref": "SerialNumber"}}}},
            "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
                "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": device_policy}}}})


def job_document() -> str:
    return json.dumps({"operation": "firmware-update", "rollout": ROLLOUT, "version": "2.0.0"})


@dataclass(frozen=True)
class PlaneSetUp:
    claim_certificate_id: str
    role_arn: str
    job_targets: tuple[str, ...]


def set_up(iot: Any, iam: Any, claim_pem: str, device_policy: str, job_targets: Iterable[str]) -> PlaneSetUp:
    """The plane objects in the primary (`iot`), before the promotion's sync."""
    role = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(TRUST),
                           Description="what drill devices may do with credentials from the role alias")["Role"]
    iot.create_role_alias(roleAlias=ROLE_ALIAS, roleArn=role["Arn"], credentialDurationSeconds=900)
    iot.create_policy(policyName=CLAIM_POLICY, policyDocument=claim_policy())
    iot.create_provisioning_template(templateName=TEMPLATE, templateBody=template_body(device_policy), enabled=True,
                                     provisioningRoleArn=role["Arn"],
                                     description="drill devices provisioned by claim")
    claim = iot.register_certificate_without_ca(certificatePem=claim_pem, status="ACTIVE")
    iot.attach_policy(policyName=CLAIM_POLICY, target=claim["certificateArn"])
    targets = tuple(job_targets)
    if targets:
        arns = [iot.describe_thing(thingName=t)["thingArn"] for t in targets]
        iot.create_job(jobId=JOB, targets=arns, document=job_document(), targetSelection="SNAPSHOT",
                       description="the drill's rollout")
    return PlaneSetUp(str(claim["certificateId"]), str(role["Arn"]), targets)


# -- c. the job, as devices run it ------------------------------------------------------------------

@dataclass(frozen=True)
class JobRun:
    at: float
    thing: str
    region: str
    job_id: str
    rollout: str | None
    status: str  # what the device set: IN_PROGRESS (started) or SUCCEEDED (installed)


@dataclass
class JobDevices:
    """The job targets' job agents: each asks the jobs data plane (`jobs_data(region)`) of the region
    its device is connected to (`region_of(thing)`)."""

    jobs_data: Callable[[str], Any]
    region_of: Callable[[str], str | None]
    runs: list[JobRun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _log(self, run: JobRun) -> None:
        with self._lock:
            self.runs.append(run)

    def step(self, thing: str, *, finish: bool = True) -> str | None:
        """Start the device's next pending job where it is connected and (with `finish`) install it
        to SUCCEEDED; the job id, or None when nothing is pending."""
        region = self.region_of(thing)
        if region is None:
            return None
        data = self.jobs_data(region)
        got = data.start_next_pending_job_execution(thingName=thing).get("execution")
        if not got:
            return None
        job_id = str(got["jobId"])
        try:
            rollout = json.loads(got.get("jobDocument") or "{}").get("rollout")
        except ValueError:
            rollout = None
        self._log(JobRun(time.time(), thing, region, job_id, rollout, "IN_PROGRESS"))
        if finish:
            data.update_job_execution(thingName=thing, jobId=job_id, status="SUCCEEDED",
                                      expectedVersion=int(got["versionNumber"]),
                                      statusDetails={"installed": str(rollout)})
            self._log(JobRun(time.time(), thing, region, job_id, rollout, "SUCCEEDED"))
        return job_id

    def drain(self, things: Iterable[str], max_jobs: int = 5) -> None:
        """Every device runs whatever is pending for it where it is connected (bounded per device)."""
        for thing in things:
            for _ in range(max_jobs):
                try:
                    if self.step(thing) is None:
                        break
                except Exception as exc:  # noqa: BLE001 - reported as the demo's reason
                    self.errors.append(f"{thing}: {reason(exc)}")
                    break


def succeed_count(targets: int, share: float = SUCCEED_SHARE) -> int:
    """How many targets finish in the primary before the kill: `share` of them, leaving one at least."""
    return max(0, min(targets - 1, math.floor(share * targets + 0.5)))


def tally_job(runs: Iterable[JobRun], targets: Iterable[str], killed: str, survivor: str,
              killed_at: float) -> JobDemo:
    """The job demo from the devices' own logs."""
    wanted = tuple(targets)
    mine = [r for r in runs if r.rollout == ROLLOUT and r.thing in wanted]
    done = [r for r in mine if r.status == "SUCCEEDED"]
    before = {r.thing for r in done if r.region == killed and r.at < killed_at}
    started = {r.thing for r in mine if r.region == killed and r.at < killed_at and r.status == "IN_PROGRESS"}
    after = {r.thing for r in done if r.region == survivor and r.at >= killed_at}
    per_thing: dict[str, int] = {}
    for r in done:
        per_thing[r.thing] = per_thing.get(r.thing, 0) + 1
    twice = sum(1 for n in per_thing.values() if n > 1)
    never = sum(1 for t in wanted if t not in per_thing)
    carried = next((r.job_id for r in mine if r.region == survivor), None)
    demo = JobDemo(DemoStatus.OK, "", JOB, carried, len(wanted), len(before), len(started - before),
                   len(after), twice, never)
    why = job_failure(demo)
    return replace(demo, status=DemoStatus.FAILED, why=why) if why else demo


def job_failure(d: JobDemo) -> str:
    """The one-line reason a job demo failed, or ""."""
    if d.executed_twice:
        return f"{d.executed_twice} devices ran {ROLLOUT} twice"
    if d.never_completed:
        return (f"{d.never_completed} of {d.targets} targets never completed the job "
                f"({d.succeeded_before} in the primary, {d.completed_after} in the survivor"
                + (", no carried job found there)" if d.carried_as is None else f" as {d.carried_as})"))
    if d.succeeded_before + d.completed_after != d.targets:
        return f"{d.succeeded_before} + {d.completed_after} completions for {d.targets} targets"
    return ""


# -- a. and b. --------------------------------------------------------------------------------------

def provision_by_claim(fleet_provisioning: Any, claim_certificate_id: str,
                       connect: Callable[[str, str, str], str], wait: Callable[[Callable[[], bool], float], bool]
                       ) -> ProvisionDemo:
    """`connect(client_id, cert_pem, key_pem)` is the front door's answer to a CONNECT with that
    certificate (empty pems: the claim certificate); `wait(cond, timeout)` a bounded poll."""
    from orchestrator.drill.world.device_services import DeviceRefused

    claim_verdict = connect(CLAIM_CLIENT, "", "")
    if claim_verdict != "accepted":
        return ProvisionDemo(DemoStatus.FAILED, f"the claim certificate's CONNECT: {claim_verdict}", claim_verdict)
    try:
        keys = fleet_provisioning.create_keys_and_certificate(claim_certificate_id, CLAIM_CLIENT)
        done = fleet_provisioning.register_thing(claim_certificate_id, CLAIM_CLIENT, TEMPLATE,
                                                 keys["certificateOwnershipToken"], {"SerialNumber": SERIAL})
    except DeviceRefused as exc:
        return ProvisionDemo(DemoStatus.FAILED, f"fleet provisioning refused: {exc}", claim_verdict)
    except Exception as exc:  # noqa: BLE001 - the demo's reason, one line
        return ProvisionDemo(DemoStatus.FAILED, f"fleet provisioning: {reason(exc)}", claim_verdict)
    thing = done.get("thingName")
    cert_id = str(keys["certificateId"])
    if not thing:
        return ProvisionDemo(DemoStatus.FAILED, "RegisterThing made no thing", claim_verdict, None, cert_id)
    verdict = [""]

    def accepted() -> bool:  # the door trusts a newly ACTIVE certificate from its next registry refresh
        verdict[0] = connect(str(thing), keys["certificatePem"], keys["privateKey"])
        return verdict[0] == "accepted"

    if not wait(accepted, 15.0):
        return ProvisionDemo(DemoStatus.FAILED, f"{thing}'s CONNECT with its new certificate: {verdict[0]}",
                             claim_verdict, str(thing), cert_id, verdict[0])
    return ProvisionDemo(DemoStatus.OK, "", claim_verdict, str(thing), cert_id, verdict[0])


def role_alias_credentials(provider: Any, certificate_id: str, thing: str,
                           caller_identity: Callable[[dict[str, Any]], str]) -> CredentialsDemo:
    """Credentials through the role alias, then `caller_identity(credentials)`: the STS caller ARN."""
    from orchestrator.drill.world.device_services import DeviceRefused

    try:
        got = provider.credentials(certificate_id, ROLE_ALIAS, thing_name=thing)["credentials"]
    except DeviceRefused as exc:
        return CredentialsDemo(DemoStatus.FAILED, f"the credentials provider refused: {exc}", thing, ROLE_ALIAS)
    except Exception as exc:  # noqa: BLE001 - the demo's reason, one line
        return CredentialsDemo(DemoStatus.FAILED, f"the credentials provider: {reason(exc)}", thing, ROLE_ALIAS)
    try:
        arn = caller_identity(got)
    except Exception as exc:  # noqa: BLE001
        return CredentialsDemo(DemoStatus.FAILED, f"STS refused the credentials: {reason(exc)}", thing, ROLE_ALIAS)
    if f":assumed-role/{ROLE}/" not in arn:
        return CredentialsDemo(DemoStatus.FAILED, f"the credentials are not {ROLE}'s: {arn}", thing, ROLE_ALIAS, arn)
    return CredentialsDemo(DemoStatus.OK, "", thing, ROLE_ALIAS, arn)


def reason(exc: Exception) -> str:
    """One line for a demo's report (secrets scrubbed)."""
    from orchestrator.scrub import scrub

    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    text = scrub(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
    return (f"{code}: {text}" if code and code not in text else text)[:200]


__all__ = ["CLAIM_CLIENT", "JOB", "ROLE_ALIAS", "ROLLOUT", "TEMPLATE", "JobDevices", "JobRun", "PlaneSetUp",
           "job_failure", "provision_by_claim", "reason", "role_alias_credentials", "set_up", "succeed_count",
           "tally_job"]
