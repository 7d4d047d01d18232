r"""IoT control-plane calls moto 5.2.5 lacks or answers too loosely, added to the local AWS world.

Loaded into the moto server by `procs.STRICT_MOTO` (the drill's world and every test tier), never
by the orchestrator itself. State lives on moto's per-region IoT backend, so `/moto-api/reset`
clears it. What is added, and the rule each follows (AWS IoT API reference):

- DescribeEventConfigurations / UpdateEventConfigurations (moto has neither): every type starts
  disabled, as in a new account; a type outside the EventType enum is InvalidRequestException.
- ListCACertificates (moto has none), and RegisterCACertificate's `certificateMode` and
  `allowAutoRegistration` (moto ignores both): "If certificateMode is SNI_ONLY, the
  verificationCertificate field must be empty. If certificateMode is DEFAULT or not provided, the
  verificationCertificate field must not be empty" (InvalidRequestException); a CA already
  registered in the region is ResourceAlreadyExistsException. DescribeCACertificate then says
  `certificateMode` and `autoRegistrationStatus`, and UpdateCACertificate's
  `newAutoRegistrationStatus` (ENABLE | DISABLE) is kept.
- Provisioning templates (moto has none): Create/Describe/List/Update/Delete, and their versions
  (Create/Describe/List/DeleteProvisioningTemplateVersion). Names 1-36 of [0-9A-Za-z_-]; a body
  must be JSON; at most 5 versions (VersionsLimitExceededException); the default version cannot
  be deleted (DeleteConflictException); `type` FLEET_PROVISIONING (default) or JITP, and a
  `preProvisioningHook` only for FLEET_PROVISIONING, its Lambda function in the same region and
  existing there (InvalidRequestException otherwise).
- Custom authorizers (moto has none): Create/Describe/List/Update/Delete. Names 1-128 of
  [\w=,@-]; the authorizer function must be a Lambda function of the same region that exists;
  token-signing public keys (at most 2, each a PEM public key) unless `signingDisabled`; status
  ACTIVE or INACTIVE; an ACTIVE authorizer cannot be deleted (DeleteConflictException).
- CreatePolicy / CreatePolicyVersion (moto takes any document): at most 2,048 characters excluding
  whitespace (InvalidRequestException), and a document the policy grammar refuses is
  MalformedPolicyException (`orchestrator/drill/world/iotpolicy.parse_document`, the rules with
  their sources).
- Jobs as devices run them (`iot-jobs-data`) and job status transitions: orchestrator/drill/world/iot_jobs.py.
- Dynamic thing groups: orchestrator/drill/world/iot_groups.py.
- CreateKeysAndCertificate's certificates signed by an issuing CA the regions' front doors trust
  (moto's cannot be verified by any TLS stack): orchestrator/drill/world/iot_issuer.py.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

_TEMPLATE_NAME = re.compile(r"^[0-9A-Za-z_-]{1,36}$")
_AUTHORIZER_NAME = re.compile(r"^[\w=,@-]{1,128}$")
MAX_TEMPLATE_VERSIONS = 5
MAX_SIGNING_KEYS = 2
POLICY_DOCUMENT_LIMIT = 2048  # characters, whitespace excluded (CreatePolicy; see install)

EVENT_TYPES = ("THING", "THING_GROUP", "THING_TYPE", "THING_GROUP_MEMBERSHIP", "THING_GROUP_HIERARCHY",
               "THING_TYPE_ASSOCIATION", "JOB", "JOB_EXECUTION", "POLICY", "CERTIFICATE", "CA_CERTIFICATE")


def _events(backend: Any) -> dict[str, bool]:
    found: dict[str, bool] = backend.__dict__.setdefault("_orchestrate_events", {t: False for t in EVENT_TYPES})
    return found


def install() -> None:
    """Add the calls to moto's IoT responses (idempotent)."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.iot.exceptions import InvalidRequestException, ResourceAlreadyExistsException
    from moto.iot.models import FakeCaCertificate
    from moto.iot.responses import IoTResponse

    from orchestrator.drill.world.iot_jobs import install as install_jobs

    install_jobs()  # the device-side jobs API and job status transitions (orchestrator/drill/world/iot_jobs.py)
    from orchestrator.drill.world.iot_issuer import install as install_issuer

    install_issuer()  # CreateKeysAndCertificate issues verifiable certificates (orchestrator/drill/world/iot_issuer.py)
    from orchestrator.drill.world.iot_groups import install as install_groups

    install_groups()  # dynamic thing groups (orchestrator/drill/world/iot_groups.py)
    if getattr(IoTResponse, "_orchestrate_plane", False):
        return
    original_register = IoTResponse.register_ca_certificate
    original_describe = IoTResponse.describe_ca_certificate
    original_update = IoTResponse.update_ca_certificate

    def describe_event_configurations(self: Any) -> Any:
        return ActionResult({"eventConfigurations": {t: {"Enabled": v}
                                                     for t, v in _events(self.iot_backend).items()}})

    def update_event_configurations(self: Any) -> Any:
        asked = self._get_param("eventConfigurations") or {}
        unknown = sorted(set(asked) - set(EVENT_TYPES))
        if unknown:
            raise InvalidRequestException(f"Invalid event type: {unknown[0]}")
        current = _events(self.iot_backend)
        for t, conf in asked.items():
            current[t] = bool((conf or {}).get("Enabled", False))
        return EmptyResult()

    def register_ca_certificate(self: Any) -> Any:
        mode = self._get_param("certificateMode") or "DEFAULT"
        if mode not in ("DEFAULT", "SNI_ONLY"):
            raise InvalidRequestException(f"Invalid certificateMode: {mode}")
        verification = self._get_param("verificationCertificate")
        if mode == "SNI_ONLY" and verification:
            raise InvalidRequestException("verificationCertificate must be empty when certificateMode is SNI_ONLY")
        if mode == "DEFAULT" and not verification:
            raise InvalidRequestException("verificationCertificate is required when certificateMode is DEFAULT")
        pem = self._get_param("caCertificate")
        for ca in self.iot_backend.ca_certificates.values():
            if ca.certificate_pem == pem:
                raise ResourceAlreadyExistsException("The CA certificate is already registered",
                                                     ca.certificate_id, ca.arn)
        result = original_register(self)
        ca = self.iot_backend.ca_certificates[cast(dict, result.result)["certificateId"]]
        ca.certificate_mode = mode
        ca.auto_registration_status = "ENABLE" if self._get_bool_param("allowAutoRegistration") else "DISABLE"
        return result

    def list_ca_certificates(self: Any) -> Any:
        rows = [{"certificateArn": c.arn, "certificateId": c.certificate_id, "status": c.status,
                 "certificateMode": getattr(c, "certificate_mode", "DEFAULT"), "creationDate": c.creation_date}
                for c in sorted(self.iot_backend.ca_certificates.values(), key=lambda c: c.certificate_id)]
        return ActionResult({"certificates": rows})

    def describe_ca_certificate(self: Any) -> Any:
        ca_id = self.path.split("/")[-1]
        result = original_describe(self)
        ca: FakeCaCertificate = self.iot_backend.describe_ca_certificate(ca_id)
        body: dict[str, Any] = dict(cast(dict, result.result))
        body["certificateDescription"] = {**body["certificateDescription"],
                                          "certificateMode": getattr(ca, "certificate_mode", "DEFAULT"),
                                          "autoRegistrationStatus": getattr(ca, "auto_registration_status",
                                                                            "DISABLE")}
        return ActionResult(body)

    def update_ca_certificate(self: Any) -> Any:
        auto = self._get_param("newAutoRegistrationStatus")
        if auto not in (None, "ENABLE", "DISABLE"):
            raise InvalidRequestException(f"Invalid newAutoRegistrationStatus: {auto}")
        status = self._get_param("newStatus")
        if status not in (None, "ACTIVE", "INACTIVE"):
            raise InvalidRequestException(f"Invalid newStatus: {status}")
        result = original_update(self)
        if auto is not None:
            self.iot_backend.describe_ca_certificate(self.path.split("/")[-1]).auto_registration_status = auto
        return result

    original_create_policy = IoTResponse.create_policy
    original_create_policy_version = IoTResponse.create_policy_version

    def _policy_fits(self: Any) -> None:
        # CreatePolicy, CreatePolicyVersion: "policyDocument must have a minimum length of 1, with a
        # maximum length of 2048, excluding whitespace" (AWS IoT API reference). moto takes any size.
        # Of the two errors AWS documents for these calls (InvalidRequestException,
        # MalformedPolicyException), which one a long document gets is not documented: ours.
        document = self._get_param("policyDocument") or ""
        size = sum(1 for c in document if not c.isspace())
        if not 1 <= size <= POLICY_DOCUMENT_LIMIT:
            raise InvalidRequestException(
                f"policyDocument has {size} characters excluding whitespace; the limit is {POLICY_DOCUMENT_LIMIT}")
        # A document AWS IoT refuses: MalformedPolicyException, "The policy documentation is not
        # valid" (HTTP 400; CreatePolicy / CreatePolicyVersion, Errors). The rules, each with its
        # source, are the one parser's (orchestrator/drill/world/iotpolicy.py, parse_document), which
        # the brokers' authoriser also reads policies with. moto takes any text.
        from orchestrator.drill.world.iotpolicy import MalformedPolicy, validate

        try:
            validate(document)
        except MalformedPolicy as exc:
            raise _malformed(str(exc)) from None

    def create_policy(self: Any) -> Any:
        _policy_fits(self)
        return original_create_policy(self)

    def create_policy_version(self: Any) -> Any:
        _policy_fits(self)
        return original_create_policy_version(self)

    for fn in (describe_event_configurations, update_event_configurations, register_ca_certificate,
               list_ca_certificates, describe_ca_certificate, update_ca_certificate, *_templates(), *_authorizers(),
               create_policy, create_policy_version):
        setattr(IoTResponse, fn.__name__, fn)
    setattr(IoTResponse, "_orchestrate_plane", True)  # noqa: B010 - a flag on a foreign class


def _malformed(message: str) -> Exception:
    """IoT's MalformedPolicyException (HTTP 400), which moto does not define."""
    from moto.iot.exceptions import IoTClientError

    error = IoTClientError("MalformedPolicyException", message)
    error.code = 400
    return error


def _errors() -> Any:
    from moto.iot import exceptions

    return exceptions


def _function_exists(self: Any, arn: str | None, what: str) -> None:
    """A Lambda function ARN of the request's region that exists there (InvalidRequestException)."""
    from moto.awslambda.models import lambda_backends

    parts = (arn or "").split(":")
    if len(parts) < 7 or parts[2] != "lambda" or parts[5] != "function":
        raise _errors().InvalidRequestException(f"{what}: {arn!r} is not a Lambda function ARN")
    if parts[3] != self.region:
        raise _errors().InvalidRequestException(f"{what}: {arn} is not in {self.region}")
    try:
        lambda_backends[self.current_account][self.region].get_function(parts[6])
    except Exception:
        raise _errors().InvalidRequestException(f"{what}: function {arn} does not exist") from None


def _store(self: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = self.iot_backend.__dict__.setdefault(name, {})
    return found


def _now() -> float:
    import time

    return time.time()


def _templates() -> list[Any]:
    from moto.core.responses import ActionResult, EmptyResult

    def arn(self: Any, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.current_account}:provisioningtemplate/{name}"

    def body_ok(body: Any) -> str:
        try:
            json.loads(body or "")
        except ValueError:
            raise _errors().InvalidRequestException("templateBody is not valid JSON") from None
        return str(body)

    def hook_ok(self: Any, hook: Any, kind: str) -> Any:
        if hook:
            if kind != "FLEET_PROVISIONING":
                raise _errors().InvalidRequestException("preProvisioningHook is only for FLEET_PROVISIONING templates")
            _function_exists(self, hook.get("targetArn"), "preProvisioningHook")
        return hook or None

    def get(self: Any) -> dict[str, Any]:
        name = self._get_param("templateName")
        found = _store(self, "_orchestrate_templates").get(name)
        if found is None:
            raise _errors().ResourceNotFoundException(f"Provisioning template {name} not found")
        return dict(found)

    def create_provisioning_template(self: Any) -> Any:
        name = self._get_param("templateName") or ""
        if not _TEMPLATE_NAME.match(name):
            raise _errors().InvalidRequestException(f"templateName {name!r} must match [0-9A-Za-z_-]{{1,36}}")
        store = _store(self, "_orchestrate_templates")
        if name in store:
            raise _errors().ResourceAlreadyExistsException(f"Template {name} already exists", name, arn(self, name))
        kind = self._get_param("type") or "FLEET_PROVISIONING"
        if kind not in ("FLEET_PROVISIONING", "JITP"):
            raise _errors().InvalidRequestException(f"Invalid type: {kind}")
        description = self._get_param("description") or ""
        if len(description) > 500:
            raise _errors().InvalidRequestException("description is longer than 500 characters")
        now = _now()
        store[name] = {"templateArn": arn(self, name), "templateName": name, "description": description,
                       "creationDate": now, "lastModifiedDate": now, "defaultVersionId": 1,
                       "enabled": bool(self._get_param("enabled")), "type": kind,
                       "provisioningRoleArn": self._get_param("provisioningRoleArn"),
                       "preProvisioningHook": hook_ok(self, self._get_param("preProvisioningHook"), kind),
                       "versions": {1: {"versionId": 1, "creationDate": now,
                                        "templateBody": body_ok(self._get_param("templateBody"))}}, "next": 2}
        return ActionResult({"templateArn": arn(self, name), "templateName": name, "defaultVersionId": 1})

    def describe_provisioning_template(self: Any) -> Any:
        t = get(self)
        body = t["versions"][t["defaultVersionId"]]["templateBody"]
        out = {k: v for k, v in t.items() if k not in ("versions", "next") and v is not None}
        return ActionResult({**out, "templateBody": body})

    def list_provisioning_templates(self: Any) -> Any:
        rows = [{k: t[k] for k in ("templateArn", "templateName", "description", "creationDate",
                                   "lastModifiedDate", "enabled", "type")}
                for _, t in sorted(_store(self, "_orchestrate_templates").items())]
        return ActionResult({"templates": rows})

    def update_provisioning_template(self: Any) -> Any:
        t = _store(self, "_orchestrate_templates")[get(self)["templateName"]]
        for field in ("description", "enabled", "provisioningRoleArn"):
            value = self._get_param(field)
            if value is not None:
                t[field] = value
        default = self._get_param("defaultVersionId")
        if default is not None:
            if int(default) not in t["versions"]:
                raise _errors().ResourceNotFoundException(f"version {default} not found")
            t["defaultVersionId"] = int(default)
        if self._get_bool_param("removePreProvisioningHook"):
            t["preProvisioningHook"] = None
        elif self._get_param("preProvisioningHook") is not None:
            t["preProvisioningHook"] = hook_ok(self, self._get_param("preProvisioningHook"), t["type"])
        t["lastModifiedDate"] = _now()
        return EmptyResult()

    def delete_provisioning_template(self: Any) -> Any:
        del _store(self, "_orchestrate_templates")[get(self)["templateName"]]
        return EmptyResult()

    def create_provisioning_template_version(self: Any) -> Any:
        t = _store(self, "_orchestrate_templates")[get(self)["templateName"]]
        if len(t["versions"]) >= MAX_TEMPLATE_VERSIONS:
            raise _errors().VersionsLimitExceededException(t["templateName"])
        vid = t["next"]
        t["next"] += 1
        t["versions"][vid] = {"versionId": vid, "creationDate": _now(),
                              "templateBody": body_ok(self._get_param("templateBody"))}
        if self._get_bool_param("setAsDefault"):
            t["defaultVersionId"] = vid
        return ActionResult({"templateArn": t["templateArn"], "templateName": t["templateName"], "versionId": vid,
                             "isDefaultVersion": t["defaultVersionId"] == vid})

    def _version(self: Any) -> tuple[dict[str, Any], int]:
        t = _store(self, "_orchestrate_templates")[get(self)["templateName"]]
        vid = int(self._get_param("versionId"))
        if vid not in t["versions"]:
            raise _errors().ResourceNotFoundException(f"version {vid} not found")
        return t, vid

    def describe_provisioning_template_version(self: Any) -> Any:
        t, vid = _version(self)
        return ActionResult({**t["versions"][vid], "isDefaultVersion": t["defaultVersionId"] == vid})

    def list_provisioning_template_versions(self: Any) -> Any:
        t = _store(self, "_orchestrate_templates")[get(self)["templateName"]]
        return ActionResult({"versions": [{"versionId": v, "creationDate": d["creationDate"],
                                           "isDefaultVersion": t["defaultVersionId"] == v}
                                          for v, d in sorted(t["versions"].items())]})

    def delete_provisioning_template_version(self: Any) -> Any:
        t, vid = _version(self)
        if t["defaultVersionId"] == vid:
            raise _errors().DeleteConflictException("the default version cannot be deleted")
        del t["versions"][vid]
        return EmptyResult()

    return [create_provisioning_template, describe_provisioning_template, list_provisioning_templates,
            update_provisioning_template, delete_provisioning_template, create_provisioning_template_version,
            describe_provisioning_template_version, list_provisioning_template_versions,
            delete_provisioning_template_version]


def _authorizers() -> list[Any]:
    from moto.core.responses import ActionResult, EmptyResult

    def arn(self: Any, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.current_account}:authorizer/{name}"

    def keys_ok(keys: Any, disabled: bool) -> dict[str, str]:
        keys = dict(keys or {})
        if not disabled and not keys:
            raise _errors().InvalidRequestException("tokenSigningPublicKeys are required unless signingDisabled")
        if len(keys) > MAX_SIGNING_KEYS:
            raise _errors().InvalidRequestException(f"at most {MAX_SIGNING_KEYS} tokenSigningPublicKeys")
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        for name, pem in keys.items():
            try:
                load_pem_public_key(str(pem).encode())
            except ValueError:
                raise _errors().InvalidRequestException(f"tokenSigningPublicKeys[{name}] is not a PEM public key") \
                    from None
        return keys

    def get(self: Any) -> dict[str, Any]:
        name = self._get_param("authorizerName")
        found = _store(self, "_orchestrate_authorizers").get(name)
        if found is None:
            raise _errors().ResourceNotFoundException(f"Authorizer {name} not found")
        return dict(found)

    def create_authorizer(self: Any) -> Any:
        name = self._get_param("authorizerName") or ""
        if not _AUTHORIZER_NAME.match(name):
            raise _errors().InvalidRequestException(f"authorizerName {name!r} must match [\\w=,@-]{{1,128}}")
        store = _store(self, "_orchestrate_authorizers")
        if name in store:
            raise _errors().ResourceAlreadyExistsException(f"Authorizer {name} already exists", name, arn(self, name))
        function = self._get_param("authorizerFunctionArn")
        _function_exists(self, function, "authorizerFunctionArn")
        disabled = bool(self._get_param("signingDisabled"))
        status = self._get_param("status") or "ACTIVE"
        if status not in ("ACTIVE", "INACTIVE"):
            raise _errors().InvalidRequestException(f"Invalid status: {status}")
        now = _now()
        store[name] = {"authorizerName": name, "authorizerArn": arn(self, name), "authorizerFunctionArn": function,
                       "tokenKeyName": self._get_param("tokenKeyName"),
                       "tokenSigningPublicKeys": keys_ok(self._get_param("tokenSigningPublicKeys"), disabled),
                       "status": status, "signingDisabled": disabled,
                       "enableCachingForHttp": bool(self._get_param("enableCachingForHttp")),
                       "creationDate": now, "lastModifiedDate": now}
        return ActionResult({"authorizerName": name, "authorizerArn": arn(self, name)})

    def describe_authorizer(self: Any) -> Any:
        return ActionResult({"authorizerDescription": {k: v for k, v in get(self).items() if v is not None}})

    def list_authorizers(self: Any) -> Any:
        return ActionResult({"authorizers": [{"authorizerName": n, "authorizerArn": a["authorizerArn"]}
                                             for n, a in sorted(_store(self, "_orchestrate_authorizers").items())]})

    def update_authorizer(self: Any) -> Any:
        a = _store(self, "_orchestrate_authorizers")[get(self)["authorizerName"]]
        function = self._get_param("authorizerFunctionArn")
        if function is not None:
            _function_exists(self, function, "authorizerFunctionArn")
            a["authorizerFunctionArn"] = function
        keys = self._get_param("tokenSigningPublicKeys")
        if keys is not None:
            a["tokenSigningPublicKeys"] = keys_ok(keys, a["signingDisabled"])
        for field in ("tokenKeyName", "status", "enableCachingForHttp"):
            value = self._get_param(field)
            if value is not None:
                a[field] = value
        if a["status"] not in ("ACTIVE", "INACTIVE"):
            raise _errors().InvalidRequestException(f"Invalid status: {a['status']}")
        a["lastModifiedDate"] = _now()
        return ActionResult({"authorizerName": a["authorizerName"], "authorizerArn": a["authorizerArn"]})

    def delete_authorizer(self: Any) -> Any:
        a = get(self)
        if a["status"] == "ACTIVE":
            raise _errors().DeleteConflictException(f"Authorizer {a['authorizerName']} is ACTIVE: make it INACTIVE")
        del _store(self, "_orchestrate_authorizers")[a["authorizerName"]]
        return EmptyResult()

    return [create_authorizer, describe_authorizer, list_authorizers, update_authorizer, delete_authorizer]
