"""`secrets change-provider`: the one explicit way to change how a stack's secrets are encrypted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InputRejected
from orchestrator.operations.recovery import Confirm
from orchestrator.stacks.graph import all_stacks

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context

PROVIDER_SCHEMES = ("awskms://", "gcpkms://", "azurekeyvault://", "hashivault://")


@dataclass(frozen=True)
class ProviderChange:
    provider: str  # shown without query parameters
    changed: tuple[str, ...]
    missing: tuple[str, ...]  # stacks of the env that do not exist yet (they get it when created)

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "changed": list(self.changed), "missing": list(self.missing)}


def change_provider(app: Context, provider: str, *, stack: str | None, confirm: Confirm) -> ProviderChange:
    """Re-encrypt the secrets of `stack` (or every existing stack of the env) with `provider`."""
    if not (provider == "passphrase" or provider.startswith(PROVIDER_SCHEMES)):
        raise InputRejected(f"unknown secrets provider {provider!r}",
                            hint="passphrase, awskms://…, gcpkms://…, azurekeyvault://… or hashivault://…")
    names = [s.name for s in all_stacks(app.topology())]
    if stack is not None:
        if stack not in names:
            raise InputRejected(f"{stack!r} is not a stack of env {app.env} (stacks: {', '.join(names)})")
        names = [stack]
    engine = app.engine()
    existing = [n for n in names if engine.outputs(n) is not None or engine.info(n).deployed]
    missing = tuple(n for n in names if n not in existing)
    shown = provider.split("?", 1)[0]
    if not existing:
        raise InputRejected(f"no stack of env {app.env} exists yet: nothing to re-encrypt",
                            hint=f"new stacks take --secrets-provider {shown} (or ORCHESTRATE_SECRETS_PROVIDER)")
    app.notify(f"will re-encrypt the secrets of {', '.join(existing)} with {shown} "
               "(the current key and the new one are both needed)")
    confirm(f"change the secrets provider of {len(existing)} stacks of env {app.env}", app.env)
    for name in existing:
        engine.change_secrets_provider(name, provider)
        app.notify(f"{name}: secrets now encrypted with {shown}")
    return ProviderChange(shown, tuple(existing), missing)
