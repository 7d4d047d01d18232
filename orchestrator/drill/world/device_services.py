"""What a device asks of IoT Core besides MQTT publish/subscribe, in the local AWS world: the
credentials provider (role aliases) and fleet provisioning by claim (CreateKeysAndCertificate and
RegisterThing). moto 5.2.5 has neither (it stores role aliases and has no provisioning templates;
templates come from orchestrator/drill/world/iot_plane.py). Used by the drill's world and the test tiers,
never by the orchestrator. Each service belongs to one region: it reads that region's registry
(a boto3 IoT client of the region) and IAM/STS, so what a device gets after a failover depends on
what the secondary holds, as in AWS.

Credentials provider (AWS IoT developer guide, "Authorizing direct calls to AWS services using AWS
IoT Core credential provider", https://docs.aws.amazon.com/iot/latest/developerguide/authorizing-direct-aws.html):

- GET /role-aliases/<alias>/credentials with the device certificate (mutual TLS); the certificate
  must be registered and ACTIVE in the region;
- "The policy attached to the device certificate must grant the device permission to assume the
  role ... iot:AssumeRoleWithCertificate action on the ARN of the role alias"
  (`arn:aws:iot:<region>:<account>:rolealias/<alias>`; a policy naming another region's ARN grants
  nothing here), decided by `iotpolicy.evaluate` (Deny wins, default deny);
- the optional `x-amzn-iot-thingname` header: "AWS IoT checks that the thingName is attached to the
  certificate presented ... and will not provide temporary credentials unless it is"; thing policy
  variables resolve only with it;
- the role the alias names must trust `credentials.iot.amazonaws.com` (sts:AssumeRole), and the
  alias's credentialDurationSeconds must not exceed the role's maximum session duration
  (CreateRoleAlias API reference); the credentials are STS's for that role;
- answers: 200 {"credentials": {accessKeyId, secretAccessKey, sessionToken, expiration}}; refused:
  403 AccessDeniedException (the documented x-amzn-ErrorType of a refused request); an alias the
  region does not have is 404 ResourceNotFoundException (this world's assumption: the status of
  that case is not documented).

Fleet provisioning by claim (developer guide, "Device provisioning MQTT API" and "Provisioning
templates", https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html,
https://docs.aws.amazon.com/iot/latest/developerguide/provision-template.html):

- the device connects with its claim certificate; the claim certificate's policies must allow
  iot:Connect for its client id and iot:Publish on `$aws/certificates/create/json` and on
  `$aws/provisioning-templates/<template>/provision/json` (the authoriser decides, as for any publish);
- CreateKeysAndCertificate: a new key pair and certificate; "The new certificate has a
  PENDING_ACTIVATION status" until RegisterThing (here: INACTIVE, which no device can use either)
  and a certificateOwnershipToken, which "expires after one hour" and belongs to the region whose
  service issued it (a token from the primary means nothing in the secondary);
- RegisterThing: the template must exist in the region (404 ResourceNotFoundException), be enabled
  and of type FLEET_PROVISIONING (400 InvalidRequestException: this world's assumption); its
  Resources are made: AWS::IoT::Thing (ThingName, AttributePayload, ThingTypeName, ThingGroups),
  AWS::IoT::Certificate (CertificateId: the token's certificate, as the parameter
  AWS::IoT::Certificate::Id; Status, default ACTIVE), AWS::IoT::Policy (PolicyName: an existing
  policy, attached to the certificate); parameters without a value and without a Default are
  400 InvalidParametersException. Answer {thingName, deviceConfiguration}; a refusal is the
  rejected topic's {statusCode, errorCode, errorMessage}.
- Not modelled, so refused rather than guessed: a pre-provisioning hook (the world runs no Lambda
  functions), intrinsic functions other than Ref and Fn::Join, a policy given as a PolicyDocument.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.drill.world.iotpolicy import Action, Authoriser, Principal, Statement, evaluate, parse

CREDENTIALS_PRINCIPAL = "credentials.iot.amazonaws.com"
TOKEN_TTL_S = 3600  # "The certificate ownership token expires after one hour"
CREATE_TOPIC = "$aws/certificates/create/json"


def provision_topic(template: str) -> str:
    return f"$aws/provisioning-templates/{template}/provision/json"


class DeviceRefused(Exception):
    """What the service answers a device it refuses: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        """The rejected topic's payload (fleet provisioning) / the HTTP body (credentials)."""
        return {"statusCode": self.status, "errorCode": self.code, "errorMessage": self.message}


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("ResourceNotFoundException", "NoSuchEntity", "NoSuchEntityException")


def _certificate(iot: Any, certificate_id: str) -> Mapping[str, Any]:
    try:
        cert = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
    except Exception as exc:
        if _missing(exc):
            raise DeviceRefused(403, "AccessDeniedException", "Certificate is invalid on this endpoint") from None
        raise
    if cert.get("status") != "ACTIVE":
        raise DeviceRefused(403, "AccessDeniedException", f"certificate {certificate_id} is {cert.get('status')}")
    return dict(cert)


@dataclass
class CredentialsProvider:
    """The region's credentials provider (`iot`, `iam`, `sts`: boto3 clients of the region)."""

    iot: Any
    iam: Any
    sts: Any
    region: str
    account: str

    def credentials(self, certificate_id: str, role_alias: str, thing_name: str | None = None) -> dict[str, Any]:
        cert = _certificate(self.iot, certificate_id)
        arn = str(cert["certificateArn"])
        thing = None
        if thing_name is not None:
            things = self.iot.list_principal_things(principal=arn).get("things", [])
            if thing_name not in things:
                raise DeviceRefused(403, "AccessDeniedException",
                                    f"thing {thing_name} is not attached to the certificate")
            thing = thing_name
        statements: list[Statement] = []
        for p in self.iot.list_attached_policies(target=arn).get("policies", []):
            statements.extend(parse(self.iot.get_policy(policyName=p["policyName"])["policyDocument"]))
        decision = evaluate(statements, Action.ASSUME_ROLE, role_alias,
                            Principal(self.region, self.account, "", thing))
        if not decision:
            raise DeviceRefused(403, "AccessDeniedException", decision.reason)
        try:
            alias = self.iot.describe_role_alias(roleAlias=role_alias)["roleAliasDescription"]
        except Exception as exc:
            if _missing(exc):
                raise DeviceRefused(404, "ResourceNotFoundException",
                                    f"role alias {role_alias} does not exist in {self.region}") from None
            raise
        role_arn = str(alias["roleArn"])
        duration = int(alias.get("credentialDurationSeconds") or 3600)
        try:
            role = self.iam.get_role(RoleName=role_arn.rsplit("/", 1)[1])["Role"]
        except Exception as exc:
            if _missing(exc):
                raise DeviceRefused(403, "AccessDeniedException", f"role {role_arn} does not exist") from None
            raise
        if not _trusts_credentials_provider(role.get("AssumeRolePolicyDocument")):
            raise DeviceRefused(403, "AccessDeniedException",
                                f"role {role_arn} does not trust {CREDENTIALS_PRINCIPAL} to assume it")
        if duration > int(role.get("MaxSessionDuration") or 3600):
            raise DeviceRefused(403, "AccessDeniedException",
                                f"credentialDurationSeconds {duration} exceeds the role's maximum session duration")
        got = self.sts.assume_role(RoleArn=role_arn, RoleSessionName=certificate_id[:64],
                                   DurationSeconds=duration)["Credentials"]
        return {"credentials": {"accessKeyId": got["AccessKeyId"], "secretAccessKey": got["SecretAccessKey"],
                                "sessionToken": got["SessionToken"], "expiration": str(got["Expiration"])}}


def _trusts_credentials_provider(document: Any) -> bool:
    doc = json.loads(document) if isinstance(document, str) else (document or {})
    raw = doc.get("Statement", [])
    for s in [raw] if isinstance(raw, Mapping) else raw:
        services = (s.get("Principal") or {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        actions = s.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if s.get("Effect") == "Allow" and CREDENTIALS_PRINCIPAL in services and \
                any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions) and not s.get("Condition"):
            return True
    return False


@dataclass
class FleetProvisioning:
    """The region's fleet-provisioning MQTT API, asked by a device connected with `claim` (its
    claim certificate id) under `client_id`."""

    iot: Any
    region: str
    account: str
    clock: Callable[[], float] = time.time
    _secret: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)

    def _allowed(self, claim: str, client_id: str, topic: str) -> None:
        authoriser = Authoriser(self.iot, self.region, self.account)
        decision, session = authoriser.connect(claim, client_id, None)
        if not decision or session is None:
            raise DeviceRefused(403, "AccessDeniedException", decision.reason)
        decision = authoriser.publish(session, topic, 1)
        if not decision:
            raise DeviceRefused(403, "AccessDeniedException", decision.reason)

    def create_keys_and_certificate(self, claim: str, client_id: str) -> dict[str, Any]:
        self._allowed(claim, client_id, CREATE_TOPIC)
        made = self.iot.create_keys_and_certificate(setAsActive=False)
        cert_id = str(made["certificateId"])
        token = hmac.new(self._secret, f"{self.region}/{cert_id}/{self.clock()}".encode(), hashlib.sha256).hexdigest()
        self._tokens[token] = (cert_id, self.clock())
        return {"certificateId": cert_id, "certificatePem": made["certificatePem"],
                "privateKey": made["keyPair"]["PrivateKey"], "certificateOwnershipToken": token}

    def register_thing(self, claim: str, client_id: str, template: str, token: str,
                       parameters: Mapping[str, str]) -> dict[str, Any]:
        self._allowed(claim, client_id, provision_topic(template))
        issued = self._tokens.get(token)
        if issued is None or self.clock() - issued[1] > TOKEN_TTL_S:
            raise DeviceRefused(400, "InvalidCertificateOwnershipToken",
                                "the certificate ownership token is not one this region issued, or it expired")
        cert_id = issued[0]
        try:
            described = self.iot.describe_provisioning_template(templateName=template)
        except Exception as exc:
            if _missing(exc):
                raise DeviceRefused(404, "ResourceNotFoundException",
                                    f"provisioning template {template} does not exist in {self.region}") from None
            raise
        if not described.get("enabled"):
            raise DeviceRefused(400, "InvalidRequestException", f"provisioning template {template} is disabled")
        if (described.get("type") or "FLEET_PROVISIONING") != "FLEET_PROVISIONING":
            raise DeviceRefused(400, "InvalidRequestException", f"{template} is not a fleet provisioning template")
        if described.get("preProvisioningHook"):
            raise DeviceRefused(400, "NotModelled", "a pre-provisioning hook is not modelled by the local world")
        body = json.loads(described["templateBody"])
        values = _parameters(body, {**parameters, "AWS::IoT::Certificate::Id": cert_id})
        thing_name = self._apply(body, values, cert_id)
        self._tokens.pop(token, None)
        return {"thingName": thing_name, "deviceConfiguration": dict(body.get("DeviceConfiguration") or {})}

    def _apply(self, body: Mapping[str, Any], values: Mapping[str, str], cert_id: str) -> str | None:
        resources = dict(body.get("Resources") or {})
        by_type: dict[str, list[Mapping[str, Any]]] = {}
        for res in resources.values():
            by_type.setdefault(str(res.get("Type")), []).append(
                {k: _resolve(v, values) for k, v in (res.get("Properties") or {}).items()})
        unknown = sorted(set(by_type) - {"AWS::IoT::Thing", "AWS::IoT::Certificate", "AWS::IoT::Policy"})
        if unknown:
            raise DeviceRefused(400, "InvalidRequestException", f"resource type {unknown[0]} is not supported")
        for props in by_type.get("AWS::IoT::Policy", []):
            if "PolicyName" not in props:
                raise DeviceRefused(400, "NotModelled", "a PolicyDocument in a template is not modelled")
            try:
                self.iot.get_policy(policyName=props["PolicyName"])
            except Exception as exc:
                if _missing(exc):
                    raise DeviceRefused(400, "InvalidRequestException",
                                        f"policy {props['PolicyName']} does not exist in {self.region}") from None
                raise
        cert_arn = self.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]
        thing_name = None
        for props in by_type.get("AWS::IoT::Thing", []):
            thing_name = str(props["ThingName"])
            args: dict[str, Any] = {"thingName": thing_name}
            if props.get("ThingTypeName"):
                args["thingTypeName"] = props["ThingTypeName"]
            if props.get("AttributePayload"):
                args["attributePayload"] = {"attributes": dict(props["AttributePayload"])}
            try:
                self.iot.describe_thing(thingName=thing_name)
            except Exception as exc:
                if not _missing(exc):
                    raise
                self.iot.create_thing(**args)
            for group in props.get("ThingGroups") or []:
                self.iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing_name)
            self.iot.attach_thing_principal(thingName=thing_name, principal=cert_arn)
        for props in by_type.get("AWS::IoT::Policy", []):
            self.iot.attach_policy(policyName=props["PolicyName"], target=cert_arn)
        for props in by_type.get("AWS::IoT::Certificate", []) or [{"Status": "ACTIVE"}]:
            if props.get("CertificateId", cert_id) != cert_id:
                raise DeviceRefused(400, "InvalidRequestException", "the template names another certificate")
            self.iot.update_certificate(certificateId=cert_id, newStatus=str(props.get("Status") or "ACTIVE"))
        return thing_name


def _parameters(body: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    values = dict(given)
    for name, spec in (body.get("Parameters") or {}).items():
        if name in values:
            continue
        if isinstance(spec, Mapping) and "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            raise DeviceRefused(400, "InvalidParametersException", f"parameter {name} has no value")
    return values


def _resolve(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"Ref"}:
            if value["Ref"] not in values:
                raise DeviceRefused(400, "InvalidParametersException", f"parameter {value['Ref']} has no value")
            return values[value["Ref"]]
        if set(value) == {"Fn::Join"}:
            sep, parts = value["Fn::Join"]
            return str(sep).join(str(_resolve(p, values)) for p in parts)
        if any(str(k).startswith("Fn::") for k in value):
            raise DeviceRefused(400, "NotModelled", f"intrinsic function {sorted(value)[0]} is not modelled")
        return {k: _resolve(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, values) for v in value]
    return value


__all__ = ["CREDENTIALS_PRINCIPAL", "CredentialsProvider", "DeviceRefused", "FleetProvisioning", "provision_topic"]
