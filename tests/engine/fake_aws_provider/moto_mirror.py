"""Mirror what the stand-in provider creates into a moto server (FAKE_AWS_MOTO_URL).

TEST FIXTURE ONLY. The stand-in provider keeps no cloud of its own; the lifecycle commands
(`promote-secondary`, `failover`, `failback`) verify each step by reading AWS with boto3. When
FAKE_AWS_MOTO_URL is set, the stand-in really creates those resources in moto, so "the provider
created it" and "AWS shows it" agree, as with the real provider.

Which calls each resource's Create, Update and Delete make is NOT written here: it is the one
resource -> AWS-call mirror, `orchestrator/drill/world/mirror.py` (`Mirror`, also used by the drill's
engine and the ops tier's provider simulation), with terraform-provider-aws's request shapes,
replace rules and Route 53 batches (each checked with the one Route 53 model before moto sees it;
point FAKE_AWS_MOTO_URL at the strict gate, tests/aws_gate.py, for Route 53's timing too). This
module only adapts it to the plugin: boto3 clients on the moto server with the credentials the
provider acts with (identity.py: an assumed role's, so a resource lands in the role's account, as
moto keeps accounts apart by them), ARC's control plane as the fake cluster's HTTP endpoints
(FAKE_AWS_ARC_URL, orchestrator/drill/world/arc.py), and state machine definitions validated with the
Amazon States Language stand-in (tests/states_language.py) as AWS validates them (InvalidDefinition).
Any other resource stays in the Pulumi state only. Errors from moto fail the operation, as an AWS
error would.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parents[3])  # the repository: orchestrator.drill.world.mirror, tests.*
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from orchestrator.drill.world.mirror import Mirror  # noqa: E402

_KEY = "testing"


def _valid_definition(text: str) -> None:
    """CreateStateMachine's check: refused as AWS refuses an invalid definition."""
    from tests.states_language import InvalidDefinition, validate

    try:
        validate(json.loads(text))
    except (InvalidDefinition, ValueError) as exc:
        raise ValueError(f"InvalidDefinition: {exc}") from exc


def _post(url: str, body: dict[str, Any]) -> None:
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
        response.read()


class HttpArc:
    """ARC's control plane for the plugin: the fake cluster's registration endpoints (arc.py)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def add_control(self, arn: str, name: str, panel: str) -> None:
        _post(f"{self.url}/_fake/control", {"arn": arn, "name": name, "panel": panel})

    def add_safety_rule(self, arn: str, name: str, asserted: list[str], threshold: int = 1,
                        inverted: bool = False, kind: str = "ATLEAST", wait_period_ms: int = 5000) -> None:
        _post(f"{self.url}/_fake/safety-rule", {
            "arn": arn, "name": name, "asserted": asserted, "threshold": threshold, "inverted": inverted,
            "type": kind, "waitPeriodMs": wait_period_ms})

    def delete(self, arn: str) -> None:
        _post(f"{self.url}/_fake/delete", {"arn": arn})


class MotoMirror(Mirror):
    def __init__(self, url: str, credentials: Mapping[str, str] | None = None) -> None:
        """`credentials`: boto3 keyword credentials of the account the provider acts in (an
        assumed role's: moto keeps each account's resources apart by them); default moto's test keys."""
        self.url = url
        self.credentials = dict(credentials or {"aws_access_key_id": _KEY, "aws_secret_access_key": _KEY})
        arc = os.environ.get("FAKE_AWS_ARC_URL")
        # terraform's wait for INSYNC (15 s, then every 15 s) on the engine tier's time scale: 0.05 s
        super().__init__(self._boto, arc=HttpArc(arc) if arc else None, check_definition=_valid_definition,
                         time_scale=0.05 / 15)

    def _boto(self, service: str, region: str) -> Any:
        # terraform-provider-aws's retries (25, standard mode) on the tier's time scale (retries.py)
        from tests.engine.fake_aws_provider import retries

        return retries.client(service, region, self.url, self.credentials)

    # the plugin's names for the mirror's calls (fake_aws.py: Create, Update, Delete)
    created = Mirror.create
    updated = Mirror.update
    deleted = Mirror.delete
