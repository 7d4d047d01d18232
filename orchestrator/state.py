"""The one owner of `.orchestrate/`: where run state lives, and the one atomic writer.

Layout under the project directory:

    .orchestrate/
      runs/<env>-<op>-<time>.json          run journals (`up --resume`)
      lifecycle/<env>.json                 promotion / failover state machine
      lifecycle/<env>-syncs.json           when each region pair was last synced
      sync/<env>-<from>-<to>.json          registry sync checkpoints
      workspaces/<stack>/                  one Pulumi workspace per stack

Every other module asks a `StateLayout` for a path; nothing else joins `.orchestrate` itself.
Every write goes through `atomic_write_text` / `atomic_write_json`: a temporary file in the same
directory, flushed and fsynced, then `os.replace`d over the target, so a reader (or a crash) sees
the old file or the new one, never half of either; the temporary file is removed on any failure.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_DIR_NAME = ".orchestrate"


class StateLayout:
    """Paths of the orchestrator's own files for one project directory."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = Path(project_dir)

    @property
    def root(self) -> Path:
        return self.project_dir / STATE_DIR_NAME

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def lifecycle_path(self, env: str) -> Path:
        return self.root / "lifecycle" / f"{env}.json"

    def sync_record_path(self, env: str) -> Path:
        return self.root / "lifecycle" / f"{env}-syncs.json"

    def sync_checkpoint_path(self, env: str, src_region: str, dst_region: str) -> Path:
        return self.root / "sync" / f"{env}-{src_region}-{dst_region}.json"

    def sync_versions_path(self, env: str, src_region: str, dst_region: str) -> Path:
        """What the last clean sync saw (thing and shadow versions): the next one skips the rest."""
        return self.root / "sync" / f"{env}-{src_region}-{dst_region}.versions.json"

    @property
    def workspaces_dir(self) -> Path:
        return self.root / "workspaces"

    def workspace_dir(self, stack: str) -> Path:
        return self.workspaces_dir / stack

    def __repr__(self) -> str:
        return f"StateLayout({str(self.root)!r})"


def is_workspace_dir(path: Path) -> bool:
    """True for a generated stack workspace (`.orchestrate/workspaces/<stack>`), which is not a project."""
    return path.parent.name == "workspaces" and path.parent.parent.name == STATE_DIR_NAME


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace `path` with `text` atomically (temp file, fsync, rename); `mode` keeps a file mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:  # bytes as given: digests hold
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 2) -> None:
    """`atomic_write_text` of a JSON document (sorted keys, non-JSON values as strings)."""
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any | None:
    """The JSON document at `path`, or None when there is none. A corrupt file raises ValueError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)
