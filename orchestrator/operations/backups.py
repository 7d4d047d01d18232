"""Where registry backups live: $ORCHESTRATE_BACKUP_DEST, else the home region stack's vault."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from orchestrator.errors import InputRejected
from orchestrator.stacks.graph import region_stack
from programs.contract import BACKUP_OUTPUT

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context

BACKUP_DEST_ENV = "ORCHESTRATE_BACKUP_DEST"


def backup_destination(app: Context) -> str:
    return os.environ.get(BACKUP_DEST_ENV) or vault_location(app)


def vault_location(app: Context) -> str:
    """s3://<backupBucketName>/registry from the home region's stack (the topology's backup vault)."""
    topology = app.topology()
    stack = region_stack(topology, topology.home_region).name
    outputs = app.engine().outputs(stack) or {}
    if BACKUP_OUTPUT not in outputs:
        raise InputRejected(f"no backup destination: {stack} has no {BACKUP_OUTPUT} output",
                            hint=f"set backup_region in {topology.source} and run `orchestrate up`, "
                                 f"or pass --dest / set {BACKUP_DEST_ENV}")
    return f"s3://{outputs[BACKUP_OUTPUT].value}/registry"
