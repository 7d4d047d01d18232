"""Which AWS accounts a command acts in: the topology's `accounts:` (a role per target in another
account) and `allowed_account_ids` (the accounts the environment may touch).

Every stack's provider gets the same settings (`wiring.provider_config`), so Pulumi refuses to
start in another account; this check does the same for the orchestrator's own calls, before any
command changes anything (the guards call it first)."""

from __future__ import annotations

from orchestrator import aws
from orchestrator.context import Context
from orchestrator.topology import ACCOUNT_TARGETS, Topology


def targets(topology: Topology) -> tuple[str, ...]:
    """What acts somewhere: every member region, DNS, and the backups when there is a vault."""
    return (*topology.regions, ACCOUNT_TARGETS[0], *((ACCOUNT_TARGETS[1],) if topology.backup_region else ()))


def check_accounts(app: Context) -> dict[str, str]:
    """Refuse (exit 2, nothing touched) credentials whose account, or whose assumed role's account,
    is not in `allowed_account_ids`; returns each target's account. No list: nothing is asked."""
    topology = app.topology()
    if not topology.allowed_account_ids:
        return {}
    base = app.aws()
    seen: dict[str | None, str] = {}
    out: dict[str, str] = {}
    for target in targets(topology):
        role = topology.role_for(target)
        if role not in seen:
            what = f"env {topology.env} ({target})" if role is None else f"env {topology.env} ({target}, role {role})"
            seen[role] = aws.require_allowed_account(base.assuming(role), topology.allowed_account_ids, what)
        out[target] = seen[role]
    return out
