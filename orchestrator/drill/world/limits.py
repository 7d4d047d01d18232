"""Every AWS limit the local world and the test fakes enforce, with its value, its source and the
code that enforces it: the one registry docs/quotas.md is rendered from (`markdown()`).

tests/orchestrator/test_limits_registry.py keeps it honest three ways: each entry's value equals the constant at
its code location; every numeric constant of the fake modules (`FAKE_MODULES`) is either listed here
or named in `NOT_LIMITS` with why it is not an AWS limit; and docs/quotas.md holds exactly
`markdown()`. A limit added to a fake without a row here fails the suite.

`Source.AWS` rows cite the AWS page the value was read from; `Source.OURS` rows are our choice (a
modelling value, a stricter reading, or a number AWS does not publish) and say why. Nothing here
imports a fake: locations are `path:NAME`, `path:NAME[key]` (a mapping entry) or `path:Class.attr`
(a class or instance attribute's literal default).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Source(str, Enum):
    AWS = "AWS-documented"
    OURS = "our choice"


@dataclass(frozen=True)
class Limit:
    name: str  # what AWS calls it, or what the fake models
    service: str
    value: float  # as the code holds it
    unit: str
    source: Source
    url: str  # where the value was read (AWS rows); "" for our choices
    where: str  # the enforcing constant: path:NAME, path:NAME[key] or path:Class.attr
    note: str = ""


IOT_QUOTAS = "https://docs.aws.amazon.com/general/latest/gr/iot-core.html"
IOT_LIMITS = "https://docs.aws.amazon.com/iot/latest/developerguide/limits-iot.html"
SHADOW_ERRORS = "https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-error-messages.html"
SHADOW_SIZE = "https://docs.aws.amazon.com/iot/latest/developerguide/diagnosing-shadows.html"
LIST_THINGS = "https://docs.aws.amazon.com/goto/WebAPI/iot-2015-05-28/ListThings"
IOT_POLICIES = "https://docs.aws.amazon.com/iot/latest/developerguide/iot-policies.html"
CREATE_POLICY = "https://docs.aws.amazon.com/iot/latest/apireference/API_CreatePolicy.html"
# shadowName: "Length Constraints: Minimum length of 1. Maximum length of 64", pattern [$a-zA-Z0-9:_-]+
# (the same constraint is in botocore's iot-data model, shape ShadowName).
GET_SHADOW = "https://docs.aws.amazon.com/iot/latest/apireference/API_iotdata_GetThingShadow.html"
ARC_QUOTAS = "https://docs.aws.amazon.com/r53recovery/latest/dg/routing-control.quotas.html"
ARC_ASSERTION = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                 "aws-properties-route53recoverycontrol-safetyrule-assertionrule.html")
R53_HEALTH = "https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/dns-failover-determining-health-of-endpoints.html"
R53_PROPAGATION = "https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/resource-record-sets-editing.html"
LAMBDA_DDB = "https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-params.html"
R53_THROTTLING = "https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/throttling-api-requests.html"
R53_QUOTAS = "https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/DNSLimitations.html"
R53_HEALTH_CONFIG = "https://docs.aws.amazon.com/Route53/latest/APIReference/API_HealthCheckConfig.html"

_QUOTAS = "orchestrator/registry/quotas.py:DEFAULT_QUOTAS"
_API_RATES: tuple[tuple[str, float], ...] = (
    ("list_thing_principals", 10.0), ("describe_certificate", 10.0), ("list_things", 10.0),
    ("list_certificates", 10.0), ("list_targets_for_policy", 10.0), ("list_principal_things", 10.0),
    ("get_policy", 10.0), ("create_policy", 10.0), ("register_certificate_without_ca", 10.0),
    ("list_principal_policies", 15.0), ("list_attached_policies", 15.0), ("attach_policy", 15.0),
    ("search_index", 15.0), ("list_things_in_thing_group", 25.0), ("create_thing", 100.0),
    ("update_thing", 100.0), ("attach_thing_principal", 100.0), ("add_thing_to_thing_group", 100.0),
    ("list_thing_groups_for_thing", 100.0), ("describe_thing", 350.0),
)

_R53_MODEL = "orchestrator/drill/world/route53_model.py"
_R53_OPERATIONS: tuple[tuple[str, float, float], ...] = (  # the page's per-action table, as the model holds it
    ("AssociateVPCWithHostedZone", 20, 5), ("ChangeCidrCollection", 40, 5), ("CreateCidrCollection", 40, 5),
    ("CreateHealthCheck", 50, 0.5), ("CreateHostedZone", 40, 2), ("CreateReusableDelegationSet", 40, 2),
    ("CreateTrafficPolicyInstance", 1, 1), ("DeleteCidrCollection", 40, 5), ("DeleteHealthCheck", 15, 3),
    ("DeleteHostedZone", 40, 5), ("DeleteReusableDelegationSet", 40, 5), ("DeleteTrafficPolicyInstance", 1, 1),
    ("DisassociateVPCFromHostedZone", 10, 5), ("GetHealthCheckLastFailureReason", 4, 1),
    ("GetHealthCheckStatus", 4, 1),
)

LIMITS: tuple[Limit, ...] = (
    # -- IoT Core message broker --------------------------------------------------------------
    Limit("Connect requests per second per account", "IoT Core", 500.0, "CONNECT/s", Source.AWS, IOT_LIMITS,
          "orchestrator/drill/world/admission.py:ACCOUNT_CONNECTS_PER_S",
          "adjustable; some large regions default higher today: the conservative value"),
    Limit("Persistent session expiry period", "IoT Core", 3600.0, "s", Source.AWS, IOT_QUOTAS,
          "orchestrator/drill/world/authfront.py:PERSISTENT_SESSION_S",
          "adjustable, 1 hour to 7 days; times the drill's time scale; after it sessionPresent 0 and the "
          "queued messages are gone"),
    Limit("Connect requests per second per client ID", "IoT Core", 1.0, "CONNECT/s", Source.AWS, IOT_LIMITS,
          "orchestrator/drill/world/admission.py:CLIENT_CONNECTS_PER_S", "not adjustable"),
    # -- Device Shadow ------------------------------------------------------------------------
    Limit("Shadow state document size (desired + reported as sent)", "IoT Device Shadow", 8192, "bytes",
          Source.AWS, SHADOW_SIZE, "tests/iot_strict.py:SHADOW_BYTES", "metadata does not count"),
    Limit("Shadow JSON nesting depth", "IoT Device Shadow", 6, "levels", Source.AWS, SHADOW_ERRORS,
          "tests/iot_strict.py:SHADOW_DEPTH"),
    Limit("Shadow clientToken size", "IoT Device Shadow", 64, "bytes", Source.AWS, SHADOW_ERRORS,
          "tests/iot_strict.py:CLIENT_TOKEN_BYTES"),
    Limit("Named shadow name size", "IoT Device Shadow", 64, "bytes", Source.AWS, GET_SHADOW,
          "tests/iot_strict.py:SHADOW_NAME_BYTES", "the shadowName parameter's length constraint (1-64)"),
    Limit("Device Shadow API rate (shared per account and region)", "IoT Device Shadow", 4000.0, "calls/s",
          Source.AWS, IOT_QUOTAS, f"{_QUOTAS}[shadow]"),
    # -- IoT registry API -----------------------------------------------------------------------
    *(Limit(f"{api} rate", "IoT Core API", rate, "calls/s", Source.AWS, IOT_QUOTAS, f"{_QUOTAS}[{api}]",
            "per account and region, adjustable; enforced by tests/quota_proxy.py")
      for api, rate in _API_RATES),
    Limit("Rate of an API the quota table does not name", "IoT Core API", 10.0, "calls/s", Source.OURS, "",
          "orchestrator/registry/quotas.py:UNLISTED_RATE", "the lowest published control-plane quota"),
    Limit("List page size (maxResults / pageSize) maximum", "IoT Core API", 250, "items", Source.AWS, LIST_THINGS,
          "tests/iot_strict.py:MAX_PAGE", "ListThings, ListThingsInThingGroup and the other registry lists"),
    Limit("List page size when none is asked for", "IoT Core API", 25, "items", Source.OURS, "",
          "tests/iot_strict.py:DEFAULT_PAGE", "AWS does not publish the default; a small page makes paging bugs show"),
    Limit("IoT policy document size (CreatePolicy, CreatePolicyVersion)", "IoT Core API", 2048, "characters",
          Source.AWS, CREATE_POLICY, "orchestrator/drill/world/iot_plane.py:POLICY_DOCUMENT_LIMIT",
          "whitespace excluded; the device policy must fit (programs/policies.py)"),
    Limit("Policy change takes effect on open connections (policy cache)", "IoT Core", 360.0, "s", Source.AWS,
          IOT_POLICIES, "orchestrator/drill/world/iotdoor.py:POLICY_CACHE_S",
          "AWS: 6 to 8 minutes; the front door re-reads an open connection's policies at 6 (times the drill's "
          "time scale), so a revoked grant stops no later than in AWS"),
    Limit("Policy grant takes effect (policy cache)", "IoT Core", 480.0, "s", Source.AWS, IOT_POLICIES,
          "orchestrator/drill/world/iotdoor.py:POLICY_GRANT_S",
          "AWS: 6 to 8 minutes, \"it may take a few minutes to access a resource that has recently been granted "
          "access\"; the door keeps the view before a grant bounding decisions for 8 (the upper end, times the "
          "drill's time scale), for new CONNECTs and open connections"),
    Limit("Provisioning template versions", "IoT Core", 5, "versions", Source.OURS, "",
          "orchestrator/drill/world/iot_plane.py:MAX_TEMPLATE_VERSIONS",
          "AWS answers VersionsLimitExceededException (CreateProvisioningTemplateVersion) but publishes no number "
          "we could find (searched the IoT Core quotas page, the API reference and the developer guide, Dec 2026); "
          "5 is the documented limit of the sibling resource, IoT policy versions (CreatePolicyVersion: \"up to "
          "five versions\"): verify against Service Quotas in a real account"),
    Limit("Custom authorizer token-signing public keys", "IoT Core", 2, "keys", Source.OURS, "",
          "orchestrator/drill/world/iot_plane.py:MAX_SIGNING_KEYS",
          "no AWS number found (CreateAuthorizer's tokenSigningPublicKeys is a map with no documented size; "
          "searched the IoT Core quotas page and the API reference, Dec 2026); 2 is what a key rotation needs "
          "(old and new at once): the fake refuses a third, possibly stricter than AWS"),
    # -- Route 53 ARC -------------------------------------------------------------------------
    Limit("Routing controls per UpdateRoutingControlStates call", "Route 53 ARC", 10, "entries", Source.AWS,
          ARC_QUOTAS, "orchestrator/drill/world/arc.py:MAX_ENTRIES"),
    Limit("Mutating API calls to a cluster endpoint per second", "Route 53 ARC", 3, "calls/s", Source.AWS,
          ARC_QUOTAS, "orchestrator/drill/world/arc.py:MUTATING_PER_S",
          "UpdateRoutingControlState(s); over it ThrottlingException (429); times the drill's time scale"),
    Limit("Safety rule WaitPeriodMs default", "Route 53 ARC", 5000, "ms", Source.AWS, ARC_ASSERTION,
          "orchestrator/drill/world/arc.py:DEFAULT_WAIT_PERIOD_MS",
          "requests against the rule's routing controls fail during the period"),
    # -- Route 53 ------------------------------------------------------------------------------
    Limit("Health check request interval", "Route 53", 30.0, "s", Source.AWS, R53_HEALTH,
          "orchestrator/drill/model.py:ROUTE53_INTERVAL_S", "10 or 30 s; the DNS program uses 30 (the default)"),
    Limit("Health check failure threshold", "Route 53", 3, "checks", Source.OURS, "",
          "orchestrator/drill/model.py:ROUTE53_THRESHOLD",
          "the value programs/dns.py sets (AWS allows 1-10; consecutive results flip the status)"),
    Limit("Health check request interval when none is given", "Route 53", 30.0, "s", Source.AWS, R53_HEALTH_CONFIG,
          f"{_R53_MODEL}:REQUEST_INTERVAL_DEFAULT_S", "HealthCheckConfig.RequestInterval: 10 or 30, default 30"),
    Limit("Health check failure threshold when none is given", "Route 53", 3, "checks", Source.AWS,
          R53_HEALTH_CONFIG, f"{_R53_MODEL}:FAILURE_THRESHOLD_DEFAULT",
          "HealthCheckConfig.FailureThreshold: 1-10, default 3; that many results in a row turn the status"),
    Limit("ResourceRecord elements per ChangeResourceRecordSets request", "Route 53", 1000, "elements",
          Source.AWS, R53_QUOTAS, f"{_R53_MODEL}:MAX_BATCH_RECORDS",
          "an UPSERT's count twice; over it the whole batch is InvalidChangeBatch"),
    Limit("Value characters per ChangeResourceRecordSets request", "Route 53", 32000, "characters", Source.AWS,
          R53_QUOTAS, f"{_R53_MODEL}:MAX_BATCH_VALUE_CHARS",
          "an UPSERT's count twice; over it the whole batch is InvalidChangeBatch"),
    Limit("Record TTL of the custom domain", "Route 53", 60, "s", Source.OURS, "",
          "orchestrator/drill/model.py:RECORD_TTL_S", "the value programs/dns.py sets"),
    Limit("Change propagation in the drill (PENDING until INSYNC)", "Route 53", 60.0, "s", Source.AWS,
          R53_PROPAGATION, "orchestrator/drill/world/route53_model.py:PROPAGATION_S",
          "\"generally ... within 60 seconds\": the upper end, times the drill's time scale; the drill's DNS "
          "answers a change only once INSYNC"),
    Limit("Change propagation (PENDING until INSYNC)", "Route 53", 0.0, "s", Source.OURS, "",
          "tests/aws_gate.py:Gate.propagation_s",
          "default instant; tests that exercise PriorRequestNotComplete set their own time "
          "(the gate uses the model's Propagation, as the drill does)"),
    Limit("API request rate, all operations (account bucket capacity)", "Route 53", 50.0, "requests",
          Source.AWS, R53_THROTTLING, f"{_R53_MODEL}:ACCOUNT_CAPACITY",
          "token bucket per account; over it HTTP 400 Throttling \"Rate exceeded\"; the gate (real time) and "
          "the drill's engine (its time scale)"),
    Limit("API request rate, all operations (account bucket refill)", "Route 53", 10.0, "requests/s",
          Source.AWS, R53_THROTTLING, f"{_R53_MODEL}:ACCOUNT_REFILL_PER_S", "5/s before the 2026 update"),
    Limit("API request rate per operation not listed (bucket capacity)", "Route 53", 50.0, "requests",
          Source.AWS, R53_THROTTLING, f"{_R53_MODEL}:OPERATION_CAPACITY_DEFAULT",
          "ChangeResourceRecordSets, GetChange, List* among them"),
    Limit("API request rate per operation not listed (bucket refill)", "Route 53", 10.0, "requests/s",
          Source.AWS, R53_THROTTLING, f"{_R53_MODEL}:OPERATION_REFILL_PER_S_DEFAULT"),
    *(Limit(f"{op} request rate (bucket capacity)", "Route 53", capacity, "requests", Source.AWS, R53_THROTTLING,
            f"{_R53_MODEL}:OPERATION_CAPACITY[{op}]") for op, capacity, _ in _R53_OPERATIONS),
    *(Limit(f"{op} request rate (bucket refill)", "Route 53", refill, "requests/s", Source.AWS, R53_THROTTLING,
            f"{_R53_MODEL}:OPERATION_REFILL_PER_S[{op}]") for op, _, refill in _R53_OPERATIONS),
    # -- Lambda with DynamoDB Streams ---------------------------------------------------------
    Limit("Event source mapping BatchSize default", "Lambda", 100, "records", Source.AWS, LAMBDA_DDB,
          "tests/lambda_stream.py:Shard.batch_size", "programs/replication.py sets 100"),
    Limit("Event source mapping MaximumRetryAttempts", "Lambda", 10, "retries", Source.OURS, "",
          "tests/lambda_stream.py:Shard.max_retry_attempts",
          "AWS's default is -1 (until the record expires, 24 h on DynamoDB Streams); the stand-in bounds it"),
)

# Numeric constants of the fake modules that are not AWS limits, and why.
NOT_LIMITS: dict[str, str] = {
    "orchestrator/drill/world/admission.py:EPSILON": "clock arithmetic tolerance",
    "orchestrator/drill/world/services.py:WORKERS": "the stand-in's own thread pool",
    "orchestrator/registry/quotas.py:MIN_RATE": "the product limiter's floor, not an AWS number",
    "orchestrator/drill/model.py:SDK_MIN_RECONNECT_S": "the device SDK's reconnect backoff (awscrt), not AWS",
    "orchestrator/drill/model.py:SDK_MAX_RECONNECT_S": "the device SDK's reconnect backoff (awscrt), not AWS",
    "tests/quota_proxy.py:_STATUS": "HTTP status codes of the throttling answer",
    "orchestrator/drill/world/iotdoor.py:WATCH_S": "how often the local world re-reads certificate statuses "
                                             "(IoT Core disconnects at once; this bounds the delay below 1 s)",
    "orchestrator/drill/world/iotdoor.py:STATUS_MAX_AGE_S": "the oldest status listing a per-packet check may use",
    "tests/aws_gate.py:HEALTH_SCALE": "the gate's time scale for Route 53's health checks (30 s is 0.3 s), "
                                      "not an AWS limit",
    "orchestrator/drill/world/authfront.py:_CONNECT_PROPERTIES": "MQTT 5's CONNECT property ids and value sizes "
                                                          "(the protocol's encoding, not an AWS limit)",
}

# The modules whose numeric constants must each be a row above or in NOT_LIMITS.
FAKE_MODULES: tuple[str, ...] = (
    "tests/iot_strict.py", "orchestrator/drill/world/route53_model.py",
    "tests/quota_proxy.py", "tests/lambda_stream.py",
    "tests/aws_gate.py", "orchestrator/registry/quotas.py", "orchestrator/drill/world/admission.py",
    "orchestrator/drill/world/arc.py", "orchestrator/drill/world/iot_plane.py", "orchestrator/drill/world/iotpolicy.py",
    "orchestrator/drill/world/authfront.py", "orchestrator/drill/world/dns.py", "orchestrator/drill/world/netstub.py",
    "orchestrator/drill/world/broker.py", "orchestrator/drill/world/services.py", "orchestrator/drill/model.py",
    "orchestrator/drill/world/iotdoor.py",
)


def _shown(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def markdown() -> str:
    """The table docs/quotas.md holds between its markers."""
    lines = ["| limit | service | value | source | documentation | enforced at | note |",
             "|---|---|---|---|---|---|---|"]
    for lim in LIMITS:
        doc = f"[AWS]({lim.url})" if lim.url else "—"
        lines.append(f"| {lim.name} | {lim.service} | {_shown(lim.value)} {lim.unit} | {lim.source.value} | {doc} "
                     f"| `{lim.where}` | {lim.note} |")
    return "\n".join(lines) + "\n"


def iot_api_rates() -> dict[str, float]:
    """The IoT API rates of the sourced rows, keyed as the product's quota table is (boto3 method
    names; `shadow` for the shared Device Shadow bucket). The quota proxy throttles at these, not at
    the product's table, so a wrong number in the product is not wrong in the tests too."""
    prefix = "orchestrator/registry/quotas.py:DEFAULT_QUOTAS["
    return {lim.where[len(prefix):-1]: float(lim.value) for lim in LIMITS if lim.where.startswith(prefix)}


def unlisted_rate() -> float:
    return next(float(lim.value) for lim in LIMITS if lim.where.endswith(":UNLISTED_RATE"))
