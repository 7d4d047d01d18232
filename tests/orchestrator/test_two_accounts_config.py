"""Two accounts in what the orchestrator hands the engine: the home region's stack gets the DNS
role for the ACM validation record when the zone's account is not the region's; `--endpoint-url`
keeps the provider's account check working when a stack names allowed accounts; an engine failure
shows the provider's error, not the engine's closing "update failed"."""

from __future__ import annotations

import json

from orchestrator.engine.pulumi import _last_line, endpoint_overrides
from orchestrator.stacks import wiring
from tests.orchestrator.test_org_fit import DNS_ROLE, topo

URL = "http://127.0.0.1:5000"


def test_only_the_home_region_writes_the_validation_record_through_the_dns_role() -> None:
    t = topo()
    assert t.home_region == "eu-west-1"
    home = wiring.region_spec(t, "eu-west-1").config
    assert home["iot-platform:dnsRoleArn"] == DNS_ROLE
    assert "iot-platform:dnsRoleArn" not in wiring.region_spec(t, "eu-central-1").config
    # the zone in the region's own account (no dns role, or the regions' role): no second provider
    assert "iot-platform:dnsRoleArn" not in wiring.region_spec(topo(accounts={}), "eu-west-1").config
    same = "arn:aws:iam::111111111111:role/workload"
    shared = topo(accounts={"eu-west-1": same, "eu-central-1": same, "dns": same})
    assert "iot-platform:dnsRoleArn" not in wiring.region_spec(shared, "eu-west-1").config


def test_endpoint_overrides_keep_the_account_check_when_a_stack_names_allowed_accounts() -> None:
    plain = endpoint_overrides(URL, {"aws:region": "eu-west-1"})
    assert plain["aws:skipCredentialsValidation"] == plain["aws:skipRequestingAccountId"] == "true"
    assert json.loads(plain["aws:endpoints"])[0]["sts"] == URL
    for key, value in (("aws:allowedAccountIds", json.dumps(["111111111111"])),
                       ("aws:allowedAccountIds", ["111111111111"]),  # as a user writes it in YAML
                       ("aws:forbiddenAccountIds", json.dumps(["999999999999"]))):
        guarded = endpoint_overrides(URL, {"aws:region": "eu-west-1", key: value})
        assert guarded["aws:skipCredentialsValidation"] == guarded["aws:skipRequestingAccountId"] == "false", key
        assert guarded["aws:endpoints"] == plain["aws:endpoints"]


class _Failed(Exception):
    """What the Automation API raises: the CLI's stdout and stderr in its text."""


UPDATE_OUTPUT = """
 code: 255
 stdout: Updating (dev-region-eu-west-1):
 +  pulumi:pulumi:Stack iot-platform-dev-region-eu-west-1 creating (2s) error: Cannot assume IAM Role: ...
Diagnostics:
  pulumi:pulumi:Stack (iot-platform-dev-region-eu-west-1):
    error: Cannot assume IAM Role: IAM Role (arn:aws:iam::222222222222:role/orchestrate-dns) cannot be assumed.

    There are a number of possible causes of this - the most common are:
      * The role ARN is not valid

    Error: operation error STS: AssumeRole, https response error StatusCode: 403, RequestID: 1, api error \
AccessDenied: User: arn:aws:sts::123456789012:user/moto is not authorized to perform: sts:AssumeRole on resource: \
arn:aws:iam::222222222222:role/orchestrate-dns

    error: update failed

 stderr:
"""
# the program's side of the same failure, when the engine stops it first
MONITOR_FIRST = UPDATE_OUTPUT.replace("Diagnostics:", "Diagnostics:\n    error: Resource monitor has terminated, "
                                                     "shutting down")


def test_an_engine_failure_shows_the_providers_error_not_update_failed() -> None:
    for text in (UPDATE_OUTPUT, MONITOR_FIRST):
        line = _last_line(_Failed(text))
        assert "update failed" not in line and "monitor" not in line and "\n" not in line
        assert line.startswith("error: Cannot assume IAM Role: IAM Role "
                               "(arn:aws:iam::222222222222:role/orchestrate-dns)")
        assert line.endswith("is not authorized to perform: sts:AssumeRole on resource: "
                             "arn:aws:iam::222222222222:role/orchestrate-dns")
    # one specific error: that line; only the engine's closing line: that one
    assert _last_line(_Failed("error: AWS account ID not allowed: 123456789012\nerror: update failed")) == \
        "error: AWS account ID not allowed: 123456789012"
    assert _last_line(_Failed("Updating...\nerror: update failed")) == "error: update failed"
