"""The resolved options of one invocation, and what they lead to (topology, engine, AWS, state).

No click here: the CLI's composition root (`orchestrator/cli/app.py`) resolves the global options
into a `Context` and hands it to operations; tests build one directly with an in-memory engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.console import Console

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from orchestrator.aws import AwsContext
    from orchestrator.engine.types import Engine
    from orchestrator.state import StateLayout
    from orchestrator.topology import Topology

EngineFactory = Callable[["Context"], "Engine"]


class Context:
    """Resolved global options; the topology, engine and AWS context are built lazily, once.

    A plain class, not a dataclass: it sits on the path of every command, `--help` included."""

    def __init__(self, *, env: str, project_dir: Path, config_path: Path, backend_url: str,
                 endpoint_url: str | None = None, secrets_provider: str | None = None,
                 json_output: bool = False, verbose: bool = False, console: Console | None = None,
                 engine_factory: EngineFactory | None = None) -> None:
        self.env = env
        self.project_dir = project_dir
        self.config_path = config_path
        self.backend_url = backend_url
        self.endpoint_url = endpoint_url
        self.secrets_provider = secrets_provider
        self.json_output = json_output
        self.verbose = verbose
        self.console = console or Console(verbose=verbose, json_mode=json_output)
        self.engine_factory = engine_factory
        self._topology: Topology | None = None
        self._engine: Engine | None = None
        self._state: StateLayout | None = None

    @property
    def stacks_dir(self) -> Path:
        return self.config_path.parent

    @property
    def state(self) -> StateLayout:
        """Where the orchestrator keeps its own files (journals, lifecycle, checkpoints, workspaces)."""
        if self._state is None:
            from orchestrator.state import StateLayout

            self._state = StateLayout(self.project_dir)
        return self._state

    def notify(self, text: str) -> None:
        """Progress and notices (stderr); what operations report while they run."""
        self.console.info(text)

    def topology(self) -> Topology:
        if self._topology is None:
            from orchestrator import topology

            loaded = topology.load(self.config_path, env=self.env)
            self._topology = loaded.with_unrouted(self.unrouted_regions())
        return self._topology

    def unrouted_regions(self) -> frozenset[str]:
        """Regions DNS holds away from (lifecycle state); none when nothing is on record."""
        from orchestrator.state import read_json

        try:
            data = read_json(self.state.routing_path(self.env)) or {}
        except (OSError, ValueError):
            data = {}
        return frozenset(data.get("unrouted", []) if isinstance(data, dict) else [])

    def record_unrouted(self, regions: frozenset[str] | set[str]) -> None:
        """Persist the regions DNS holds away from, then reload the topology with them."""
        from orchestrator.state import atomic_write_json

        atomic_write_json(self.state.routing_path(self.env), {"unrouted": sorted(regions)})
        self._topology = None

    def reload_topology(self) -> Topology:
        self._topology = None
        return self.topology()

    def engine(self) -> Engine:
        if self._engine is None:
            if self.engine_factory is None:
                from orchestrator.errors import InputRejected

                raise InputRejected("no stack engine configured")
            self._engine = self.engine_factory(self)
        return self._engine

    def aws(self) -> AwsContext:
        from orchestrator.aws import AwsContext

        return AwsContext(endpoint_url=self.endpoint_url)
