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
- UpdateThingShadow (Device Shadow service): "The device's shadow supports 8 KB of data only ...
  Only the data for desired and reported state inside the state document sent to the device's
  shadow counts toward the limit" (Diagnosing problems with shadows), and the stored shadow after
  the update is held to the same 8 KB (re:Post answer on a 413 for a 44-byte update: "AWS IoT
  merges the current payload to the existing shadow document"); 413 "The payload exceeds the
  maximum size allowed"; 400 for invalid JSON, a missing or non-object `state`, a non-object
  `desired`/`reported`, a clientToken over 64 bytes, "JSON contains too many levels of nesting;
  maximum is 6" (Device Shadow error messages); a shadow name over 64 bytes (Device Shadow
  service quotas: "Maximum shadow name length 64 bytes").

moto answers ListTargetsForPolicy, ListThingsInThingGroup, ListThingGroupsForThing, ListThingGroups,
ListCertificates and ListPolicies in one response, whatever the page size asked (ListPolicies: the
API reference's `GET /policies?marker&pageSize`, pageSize 1-250, `nextMarker` in the answer:
https://docs.aws.amazon.com/iot/latest/apireference/API_ListPolicies.html).
`page` pages them as the API reference describes: a page size of 1 to 250 (pageSize / maxResults; anything else is
InvalidRequestException), a continuation token (nextMarker / nextToken) on every page but the
last, an unknown token refused. The reference
names no default page size; the gate uses 25 when none is asked (an assumption: small enough that a
caller that does not follow tokens is caught).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SHADOW_BYTES = 8 * 1024
SHADOW_DEPTH = 6
SHADOW_NAME_BYTES = 64
SHADOW_NAME_PATTERN = re.compile(r"[$a-zA-Z0-9:_-]+")
CLIENT_TOKEN_BYTES = 64
_SHADOW = re.compile(r"^/things/([^/]+)/shadow$")
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
          iot: Callable[[str], Any], shadow_reader: Callable[[str, str, str], dict[str, Any] | None]) -> Refusal | None:
    """None when AWS would accept what moto is about to be asked; `iot(region)` is a boto3 IoT
    client straight to moto, `shadow_reader(region, thing, shadow name)` the stored shadow's
    `state` (None: no shadow), for what a rule must look up."""
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
    if service == "iotdata":
        m = _SHADOW.match(plain)
        if m and method == "POST":
            name = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("name", [""])[0]
            return _update_shadow(region, m.group(1), name, body, shadow_reader)
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


def _bad(message: str) -> Refusal:
    return Refusal(400, "InvalidRequestException", message)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_depth(v) for v in value), default=0)
    return 0


def state_bytes(state: dict[str, Any]) -> int:
    """What counts toward the 8 KB: the desired and reported data, as compact JSON."""
    counted = {k: state[k] for k in ("desired", "reported") if state.get(k) is not None}
    return len(json.dumps(counted, separators=(",", ":"), ensure_ascii=False).encode()) if counted else 0


def merge(stored: Any, update: Any) -> Any:
    """The Device Shadow service's merge: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(update, dict) or not isinstance(stored, dict):
        return update
    out = dict(stored)
    for key, value in update.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def _update_shadow(region: str, thing: str, name: str, body: bytes,
                   shadow_reader: Callable[[str, str, str], dict[str, Any] | None]) -> Refusal | None:
    if len(name.encode()) > SHADOW_NAME_BYTES:
        return _bad(f"Shadow name is longer than {SHADOW_NAME_BYTES} bytes")
    # GetThingShadow/UpdateThingShadow's shadowName: pattern [$a-zA-Z0-9:_-]+ (orchestrator/drill/world/limits.py)
    if name and not SHADOW_NAME_PATTERN.fullmatch(name):
        return _bad("Shadow name must match [$a-zA-Z0-9:_-]+")
    try:
        doc = json.loads(body or b"")
    except ValueError:
        return _bad("Invalid JSON")
    if not isinstance(doc, dict) or "state" not in doc:
        return _bad("Missing required node: state")
    state = doc["state"]
    if not isinstance(state, dict):
        return _bad("State node must be an object")
    for section in ("desired", "reported"):
        if section in state and state[section] is not None and not isinstance(state[section], dict):
            return _bad(f"{section.capitalize()} node must be an object")
        if _depth(state.get(section)) > SHADOW_DEPTH:
            return _bad(f"JSON contains too many levels of nesting; maximum is {SHADOW_DEPTH}")
    token = doc.get("clientToken")
    if isinstance(token, str) and len(token.encode()) > CLIENT_TOKEN_BYTES:
        return _bad("Invalid clientToken")
    if state_bytes(state) > SHADOW_BYTES:
        return Refusal(413, "RequestEntityTooLargeException", "The payload exceeds the maximum size allowed")
    stored = shadow_reader(region, urllib.parse.unquote(thing), name) or {}
    after = {s: merge(stored.get(s), state[s]) if s in state else stored.get(s) for s in ("desired", "reported")}
    if state_bytes(after) > SHADOW_BYTES:
        return Refusal(413, "RequestEntityTooLargeException", "The payload exceeds the maximum size allowed")
    return None


MAX_PAGE = 250
DEFAULT_PAGE = 25
# path -> (method, page size parameter, token parameter, result key, token key in the answer)
_PAGED: tuple[tuple[re.Pattern[str], str, str, str, str, str], ...] = (
    (re.compile(r"^/policy-targets/[^/]+$"), "POST", "pageSize", "marker", "targets", "nextMarker"),
    (re.compile(r"^/thing-groups/[^/]+/things$"), "GET", "maxResults", "nextToken", "things", "nextToken"),
    (re.compile(r"^/things/[^/]+/thing-groups$"), "GET", "maxResults", "nextToken", "thingGroups", "nextToken"),
    (re.compile(r"^/thing-groups$"), "GET", "maxResults", "nextToken", "thingGroups", "nextToken"),
    (re.compile(r"^/certificates$"), "GET", "pageSize", "marker", "certificates", "nextMarker"),
    (re.compile(r"^/policies$"), "GET", "pageSize", "marker", "policies", "nextMarker"),
)


def _token(offset: int, path: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([offset, path]).encode()).decode()


def _offset(token: str, path: str) -> int | None:
    try:
        offset, owner = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        return None
    return offset if owner == path and isinstance(offset, int) and offset > 0 else None


def _refused(message: str) -> tuple[int, bytes]:
    status, _, body = _bad(message).answer()
    return status, body


def page(service: str, method: str, path: str, status: int, payload: bytes) -> tuple[int, bytes]:
    """moto's whole-list answer cut to the page the request asked for (see the module's doc)."""
    if service != "iot" or status >= 300:
        return status, payload
    parts = urllib.parse.urlsplit(path)
    plain = urllib.parse.unquote(parts.path)
    for pattern, verb, size_key, token_key, result_key, out_key in _PAGED:
        if method != verb or not pattern.match(plain):
            continue
        query = urllib.parse.parse_qs(parts.query)
        try:
            size = int(query.get(size_key, [DEFAULT_PAGE])[0])
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE:
            return _refused(f"{size_key} must be between 1 and {MAX_PAGE}")
        start = 0
        if token_key in query:
            found = _offset(query[token_key][0], plain)
            if found is None:
                return _refused(f"invalid {token_key}")
            start = found
        doc = _json(payload)
        items = list(doc.get(result_key) or [])
        doc[result_key] = items[start:start + size]
        doc.pop(out_key, None)
        if start + size < len(items):
            doc[out_key] = _token(start + size, plain)
        return status, json.dumps(doc).encode()
    return status, payload
