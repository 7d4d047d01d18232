"""A custom domain's certificate cannot change in place (issue 21, item 3).

AWS: UpdateDomainConfiguration has no certificate field, and "to change the certificate of a
domain configuration, you must delete and recreate it"; terraform-provider-aws marks
server_certificate_arns and validation_certificate_arn ForceNew. The stand-in provider, its moto
mirror and the strict gate now do the same: a certificate change is a replacement, a replacement
with the same name clashes (it never adopts or later deletes the new configuration), and an FQDN
has one domain configuration per region. The preview flags the replacement as stateful.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.aws_gate import Gate

REGION = "eu-west-1"
TOKEN = "aws:iot/domainConfiguration:DomainConfiguration"
CERT_A = f"arn:aws:acm:{REGION}:123456789012:certificate/aaaaaaaa-0000-0000-0000-000000000001"
CERT_B = f"arn:aws:acm:{REGION}:123456789012:certificate/bbbbbbbb-0000-0000-0000-000000000002"


def _props(cert: str, **extra: Any) -> dict[str, Any]:
    return {"name": "iot-dev-eu-west-1-domain", "domainName": "iot.example.com", "serviceType": "DATA",
            "serverCertificateArns": [cert], "tlsConfig": {"securityPolicy": "IoTSecurityPolicy_TLS13_1_2_2022_10"},
            "region": REGION, **extra}


def _fake_aws() -> Any:
    plugin = Path(__file__).resolve().parents[1] / "engine" / "fake_aws_provider"
    sys.path.insert(0, str(plugin))
    try:
        return importlib.import_module("tests.engine.fake_aws_provider.fake_aws")
    finally:
        sys.path.remove(str(plugin))


def _diff(olds: dict[str, Any], news: dict[str, Any]) -> Any:
    fake = _fake_aws()
    from pulumi.runtime.proto import provider_pb2

    request = provider_pb2.DiffRequest(type=TOKEN, urn=f"urn:pulumi:dev::p::{TOKEN}::d",
                                       old_inputs=fake.to_struct(olds), olds=fake.to_struct(olds),
                                       news=fake.to_struct(news))
    return fake.FakeAws.Diff.__wrapped__(object.__new__(fake.FakeAws), request, None)  # type: ignore[attr-defined]


def test_a_certificate_change_replaces_the_domain_configuration_as_terraform_does() -> None:
    diff = _diff(_props(CERT_A), _props(CERT_B))
    assert list(diff.replaces) == ["serverCertificateArns"]
    # the program names it: pulumi-terraform-bridge deletes the old one first (same name)
    assert diff.deleteBeforeReplace is True
    assert list(_diff(_props(CERT_A), _props(CERT_A, validationCertificateArn=CERT_B)).replaces) == [
        "validationCertificateArn"]
    # what UpdateDomainConfiguration can change stays an update
    tls = _diff(_props(CERT_A), _props(CERT_A, tlsConfig={"securityPolicy": "IoTSecurityPolicy_TLS12_1_2_2022_10"}))
    assert list(tls.diffs) == ["tlsConfig"] and not list(tls.replaces) and tls.deleteBeforeReplace is False


def _mirror(gate: Gate) -> Any:
    from tests.engine.fake_aws_provider.moto_mirror import MotoMirror

    return MotoMirror(gate.url)


def test_a_replacement_with_the_same_name_clashes_and_leaves_the_serving_configuration(gate: Gate) -> None:
    """Create-before-delete with the explicit name: AWS refuses the create, and the configuration
    that serves the domain is still there (the old mirror skipped the create, then deleted it)."""
    mirror = _mirror(gate)
    mirror.created(TOKEN, REGION, "iot-dev-eu-west-1-domain", _props(CERT_A))
    with pytest.raises(ClientError, match="ResourceAlreadyExists"):
        mirror.created(TOKEN, REGION, "iot-dev-eu-west-1-domain", _props(CERT_B))
    found = gate.iot(REGION).describe_domain_configuration(domainConfigurationName="iot-dev-eu-west-1-domain")
    assert [c["serverCertificateArn"] for c in found["serverCertificates"]] == [CERT_A]


def test_one_domain_configuration_per_fqdn_in_a_region(gate: Gate, iot: Any) -> None:
    """A new name for the same FQDN (a create-before-delete with another name) is refused too."""
    iot(REGION).create_domain_configuration(domainConfigurationName="first", domainName="iot.example.com",
                                            serverCertificateArns=[CERT_A], serviceType="DATA")
    with pytest.raises(ClientError, match="already used by domain configuration first"):
        iot(REGION).create_domain_configuration(domainConfigurationName="second", domainName="IOT.example.com",
                                                serverCertificateArns=[CERT_B], serviceType="DATA")
    # another region has its own domain configurations
    iot("eu-central-1").create_domain_configuration(domainConfigurationName="second", domainName="iot.example.com",
                                                    serverCertificateArns=[CERT_B], serviceType="DATA")


def test_the_mirror_updates_in_place_only_what_the_api_can_change(gate: Gate) -> None:
    mirror = _mirror(gate)
    mirror.created(TOKEN, REGION, "d", _props(CERT_A))
    mirror.updated(TOKEN, REGION, "d", _props(CERT_A), _props(CERT_A, status="DISABLED"))
    iot = gate.iot(REGION)
    assert iot.describe_domain_configuration(
        domainConfigurationName="iot-dev-eu-west-1-domain")["domainConfigurationStatus"] == "DISABLED"
    with pytest.raises(ValueError, match="cannot change serverCertificateArns"):
        mirror.updated(TOKEN, REGION, "d", _props(CERT_A), _props(CERT_B))
    found = iot.describe_domain_configuration(domainConfigurationName="iot-dev-eu-west-1-domain")
    assert [c["serverCertificateArn"] for c in found["serverCertificates"]] == [CERT_A]


def test_a_domain_configuration_replacement_is_flagged_stateful_in_every_preview() -> None:
    from orchestrator.preview.model import is_stateful

    assert is_stateful(TOKEN)
