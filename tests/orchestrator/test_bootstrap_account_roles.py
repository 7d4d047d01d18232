"""Across accounts AWS wants the caller's own policy to allow sts:AssumeRole on the role it assumes,
besides that role's trust policy: the CI roles bootstrap generates carry the `accounts:` roles of the
accounts each acts in, and nothing when the topology names none."""

from __future__ import annotations

from typing import Any

from orchestrator.operations import bootstrap as op

REGION_ROLE = "arn:aws:iam::111111111111:role/orchestrate-regions"
DNS_ROLE = "arn:aws:iam::222222222222:role/orchestrate-dns"
BACKUP_ROLE = "arn:aws:iam::333333333333:role/orchestrate-backups"


def _assumable(policy: dict[str, Any]) -> list[str]:
    found = [s for s in policy["Statement"] if "sts:AssumeRole" in ([s["Action"]] if isinstance(s["Action"], str)
                                                                   else s["Action"])]
    assert all(s["Effect"] == "Allow" for s in found)
    return sorted(r for s in found for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]))


def _roles(accounts: dict[str, str]) -> dict[str, dict[str, Any]]:
    spec = op.BootstrapSpec("prod", "org/repo", "eu-north-1", "123456789012",
                            account_roles=tuple(sorted(accounts.items())))
    return {r.key: r.policy for r in op.role_specs(spec, "arn:aws:kms:eu-north-1:123456789012:key/k")}


def test_each_ci_role_may_assume_the_roles_of_the_accounts_it_acts_in() -> None:
    roles = _roles({"eu-west-1": REGION_ROLE, "eu-central-1": REGION_ROLE, "dns": DNS_ROLE, "backups": BACKUP_ROLE})
    assert _assumable(roles["preview"]) == sorted([REGION_ROLE, DNS_ROLE, BACKUP_ROLE])
    assert _assumable(roles["apply"]) == sorted([REGION_ROLE, DNS_ROLE, BACKUP_ROLE])
    assert _assumable(roles["backup"]) == sorted([REGION_ROLE, BACKUP_ROLE])  # reads regions, writes the vault
    assert _assumable(roles["sync"]) == [REGION_ROLE]  # the registries only


def test_one_account_gives_no_assume_role_statement() -> None:
    assert all(_assumable(policy) == [] for policy in _roles({}).values())
