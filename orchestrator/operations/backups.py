"""Where registry backups live ($ORCHESTRATE_BACKUP_DEST, else the home region stack's vault) and the
key their manifests are signed with (--signing-key, $ORCHESTRATE_BACKUP_SIGNING_KEY, else the key
the home region's stack made beside the vault)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import InputRejected
from orchestrator.stacks.graph import region_stack
from programs.contract import BACKUP_OUTPUT, SIGNING_KEY_OUTPUT

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.context import Context
    from orchestrator.engine.types import OutputValue

BACKUP_DEST_ENV = "ORCHESTRATE_BACKUP_DEST"
HomeOutputs = Callable[[], Mapping[str, "OutputValue"]]


def home_outputs(app: Context) -> HomeOutputs:
    """The home region stack's outputs, read on first use and kept: the vault and the signing key
    both come from them, and each read is a Pulumi call."""

    @functools.cache
    def read() -> Mapping[str, OutputValue]:
        topology = app.topology()
        return app.engine().outputs(region_stack(topology, topology.home_region).name) or {}

    return read


def backup_destination(app: Context, home: HomeOutputs | None = None) -> str:
    return os.environ.get(BACKUP_DEST_ENV) or vault_location(app, home)


def vault_location(app: Context, home: HomeOutputs | None = None) -> str:
    """s3://<backupBucketName>/registry from the home region's stack (the topology's backup vault)."""
    topology = app.topology()
    stack = region_stack(topology, topology.home_region).name
    outputs = (home or home_outputs(app))()
    if BACKUP_OUTPUT not in outputs:
        raise InputRejected(f"no backup destination: {stack} has no {BACKUP_OUTPUT} output",
                            hint=f"set backup_region in {topology.source} and run `orchestrate up`, "
                                 f"or pass --dest / set {BACKUP_DEST_ENV}")
    return f"s3://{outputs[BACKUP_OUTPUT].value}/registry"


def signing_key_spec(app: Context, given: str | None, home: HomeOutputs | None = None) -> str | None:
    """The backup signing key: `given` (--signing-key), else $ORCHESTRATE_BACKUP_SIGNING_KEY, else
    the home region stack's `backupSigningKey` output; None when there is none (signing then
    refuses with its own hint). A stack that cannot be read is no key, not an error here."""
    from orchestrator.errors import OrchestrateError
    from orchestrator.registry.signing import SIGNING_KEY_ENV

    named = given or os.environ.get(SIGNING_KEY_ENV)
    if named:
        return named
    try:
        outputs = (home or home_outputs(app))()
    except OrchestrateError as exc:
        app.console.debug(f"backup signing key: {exc.one_line()}")
        return None
    found = outputs.get(SIGNING_KEY_OUTPUT)
    return str(found.value) if found is not None and found.value else None


def check_destination(app: Context, dest: str) -> str:
    """`dest` if backups may go there (exit 2 otherwise, before anything is read or written): an S3
    bucket in a region of the environment's residency, or a directory that can be written."""
    topology = app.topology()
    if dest.startswith("s3://"):
        from orchestrator.aws import bucket_region
        from orchestrator.registry.backup import parse_s3_url

        bucket, _ = parse_s3_url(dest)
        region = bucket_region(app.aws(), bucket, via=topology.home_region)
        if region not in topology.residency:
            raise InputRejected(f"backup destination {dest} is in {region}, outside residency "
                                f"{list(topology.residency)} of {topology.source}: nothing was written",
                                hint="choose a vault in a residency region (backup_region)")
        return dest
    path = Path(dest)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputRejected(f"backup destination {dest} is not a directory that can be written")
    return dest
