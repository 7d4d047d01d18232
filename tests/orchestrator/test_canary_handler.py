"""The canary's Lambda handler: credentials from its secret, one probe of its region, one datum."""

from __future__ import annotations

import datetime
import json
import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator.drill.canary import METRIC_NAME, METRIC_NAMESPACE, CanaryResult
from orchestrator.drill.canary_handler import run

ENVIRON = {"CANARY_ENV": "dev", "CANARY_REGION": "eu-west-1", "CANARY_DOMAIN": "iot.example.com",
           "CANARY_ENDPOINT": "abc-ats.iot.eu-west-1.amazonaws.com", "CANARY_PORT": "8883",
           "CANARY_TIMEOUT_S": "5", "CANARY_CLIENT_ID": "iot-dev-canary-eu-west-1",
           "CANARY_TOPIC_PREFIX": "canary/eu-west-1",
           "CANARY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}


def _credentials() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "canary")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return {"certificatePem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "privateKey": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()}


class Secrets:
    def __init__(self, value: str) -> None:
        self.value, self.asked = value, []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:  # noqa: N803 (boto3's name)
        self.asked.append(SecretId)
        return {"SecretString": self.value}


class CloudWatch:
    def __init__(self) -> None:
        self.put: list[dict[str, Any]] = []

    def put_metric_data(self, **kwargs: Any) -> None:
        self.put.append(kwargs)


def test_a_round_trip_is_probed_on_the_regions_endpoint_and_reported_by_env_and_region() -> None:
    calls: list[tuple[Any, ...]] = []

    def probe(address: str, port: int, domain: str, client_id: str, **kw: Any) -> CanaryResult:
        calls.append((address, port, domain, client_id, kw))
        return CanaryResult(True, "echo", "ok", 0.2)

    secrets, cloudwatch = Secrets(json.dumps(_credentials())), CloudWatch()
    summary = run(ENVIRON, secrets_client=secrets, cloudwatch=cloudwatch, probe_fn=probe)
    assert secrets.asked == [ENVIRON["CANARY_SECRET_ARN"]]
    ((address, port, domain, client_id, kw),) = calls
    assert (address, port, domain, client_id) == (ENVIRON["CANARY_ENDPOINT"], 8883, "iot.example.com",
                                                  "iot-dev-canary-eu-west-1")
    assert isinstance(kw["tls"], ssl.SSLContext) and kw["tls"].verify_mode == ssl.CERT_REQUIRED
    assert kw["tls"].check_hostname and kw["timeout"] == 5.0
    assert kw["topic"].startswith("canary/eu-west-1/") and kw["topic"] == summary["topic"]
    assert cloudwatch.put == [{"Namespace": METRIC_NAMESPACE, "MetricData": [{
        "MetricName": METRIC_NAME, "Value": 1.0, "Unit": "Count",
        "Dimensions": [{"Name": "Env", "Value": "dev"}, {"Name": "Region", "Value": "eu-west-1"}]}]}]
    assert summary["healthy"] is True and summary["stage"] == "echo"


@pytest.mark.parametrize("secret", ["not json", json.dumps({"certificatePem": "x", "privateKey": "y"})])
def test_unusable_credentials_report_unhealthy_without_probing_or_leaking(secret: str) -> None:
    cloudwatch = CloudWatch()

    def probe(*a: Any, **kw: Any) -> CanaryResult:
        raise AssertionError("no probe without credentials")

    summary = run(ENVIRON, secrets_client=Secrets(secret), cloudwatch=cloudwatch, probe_fn=probe)
    assert summary["healthy"] is False and summary["stage"] == "setup"
    assert cloudwatch.put[0]["MetricData"][0]["Value"] == 0.0
    assert secret not in json.dumps(summary)


def test_a_refused_round_trip_reports_zero() -> None:
    cloudwatch = CloudWatch()
    summary = run(ENVIRON, secrets_client=Secrets(json.dumps(_credentials())), cloudwatch=cloudwatch,
                  probe_fn=lambda *a, **kw: CanaryResult(False, "connack", "CONNECT refused: not authorized", 0.1))
    assert summary["healthy"] is False and summary["detail"] == "CONNECT refused: not authorized"
    assert cloudwatch.put[0]["MetricData"][0]["Value"] == 0.0
