"""What AWS IoT refuses that moto accepts: the strict gate (tests/aws_gate.py) asks this module
before it forwards an IoT request to moto, and answers a refusal in IoT's shape.

TEST FIXTURE ONLY. Each rule names its source; docs/field-notes-route53-arc.md has the quotes.

- CreateDomainConfiguration: one domain configuration per FQDN in a region ("Each FQDN requires
  its own domain configuration", IoT developer guide, customer managed domains); moto already
  refuses a name that exists (ResourceAlreadyExistsException).
- UpdateDomainConfiguration: the request carries only authorizerConfig, domainConfigurationStatus,
  removeAuthorizerConfig, tlsConfig, serverCertificateConfig, authenticationType,
  applicationProtocol, clientCertificateConfig (API reference); "you can't update the server
  certificate in your domain configuration" (IoT developer guide, managing domain configurations).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_DOMAIN_CONFIG = re.compile(r"^/domainConfigurations/([\w.:-]+)$")
UPDATABLE_DOMAIN_FIELDS = frozenset({
    "authorizerConfig", "domainConfigurationStatus", "removeAuthorizerConfig", "tlsConfig",
    "serverCertificateConfig", "authenticationType", "applicationProtocol", "clientCertificateConfig"})


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str

    def answer(self) -> tuple[int, list[tuple[str, str]], bytes]:
        body = json.dumps({"message": self.message, "code": self.code}).encode()
        return self.status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", self.code)], body


def check(service: str, region: str, method: str, path: str, body: bytes,
          iot: Callable[[str], Any]) -> Refusal | None:
    """None when AWS would accept what moto is about to be asked; `iot(region)` is a boto3 IoT
    client straight to moto (for what the rule must look up)."""
    plain = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
    if service == "iot":
        m = _DOMAIN_CONFIG.match(plain)
        if m and method == "POST":
            return _create_domain_configuration(region, m.group(1), body, iot)
        if m and method == "PUT":
            extra = sorted(set(_json(body)) - UPDATABLE_DOMAIN_FIELDS)
            if extra:
                return Refusal(400, "InvalidRequestException",
                               f"UpdateDomainConfiguration cannot change {', '.join(extra)}")
    return None


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _create_domain_configuration(region: str, name: str, body: bytes, iot: Callable[[str], Any]) -> Refusal | None:
    domain = str(_json(body).get("domainName") or "").lower().rstrip(".")
    if not domain:
        return None
    client = iot(region)
    for page in client.get_paginator("list_domain_configurations").paginate():
        for summary in page.get("domainConfigurations", []):
            other = summary["domainConfigurationName"]
            if other == name:
                continue  # moto refuses the existing name itself
            found = client.describe_domain_configuration(domainConfigurationName=other)
            if str(found.get("domainName") or "").lower().rstrip(".") == domain:
                return Refusal(409, "ResourceAlreadyExistsException",
                               f"Domain name {domain} is already used by domain configuration {other}")
    return None
