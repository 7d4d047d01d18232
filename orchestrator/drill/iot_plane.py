"""IoT control-plane calls moto 5.2.5 lacks or answers too loosely, added to the local AWS world.

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
"""

from __future__ import annotations

from typing import Any, cast

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

    for fn in (describe_event_configurations, update_event_configurations, register_ca_certificate,
               list_ca_certificates, describe_ca_certificate, update_ca_certificate):
        setattr(IoTResponse, fn.__name__, fn)
    setattr(IoTResponse, "_orchestrate_plane", True)  # noqa: B010 - a flag on a foreign class
