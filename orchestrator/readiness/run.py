"""The probe of a CLI run: the topology, AWS context and backend of the `Context`, stack outputs
from the engine (read once per stack), the backup vault and signing key as `status` finds them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.readiness.probe import Probe, Settings

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context


def probe_for(app: Context, settings: Settings | None = None) -> Probe:
    from orchestrator.errors import OrchestrateError
    from orchestrator.operations.backups import backup_destination, home_outputs, signing_key_spec

    engine = app.engine()

    def outputs(name: str) -> Mapping[str, Any] | None:
        try:
            return engine.outputs(name) or {}
        except OrchestrateError as exc:  # not deployed: the rules that need it say UNKNOWN / NOT READY
            app.console.debug(f"readiness: outputs of {name}: {exc.one_line()}")
            return {}

    home = home_outputs(app)
    try:
        dest: str | None = backup_destination(app, home)
    except OrchestrateError:
        dest = None
    return Probe(env=app.env, topology=app.topology(), ctx=app.aws(), outputs=outputs,
                 settings=settings or Settings(), backend_url=app.backend_url,
                 secrets_provider=app.secrets_provider, backup_dest=dest,
                 signing_key=signing_key_spec(app, None, home))
