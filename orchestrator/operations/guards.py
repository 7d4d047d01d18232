"""Safety guards: checked before anything is touched; a refusal is exit code 4.

- A region still receiving DNS traffic, or the primary while secondaries depend on it, is never
  destroyed; the message says what to run first.
- The home region (the shared ACM validation record, the registry-events table) is not destroyed
  while other regions rely on it.
- Replication never targets a region outside the environment's residency list (topology parsing
  rejects such a file; `check_residency` guards commands that add a region).
"""

from __future__ import annotations

from orchestrator.errors import GuardRefused, InputRejected
from orchestrator.topology import Topology


def check_destroy_region(topology: Topology, region: str) -> None:
    if region == topology.primary and topology.secondaries:
        raise GuardRefused(
            f"{region} is the primary of env {topology.env} and secondaries depend on it "
            f"({', '.join(topology.secondaries)})",
            hint=f"run `orchestrate failover --to {topology.secondaries[0]}` or remove the secondaries first",
        )
    if region == topology.primary:
        raise GuardRefused(
            f"{region} is the only region of env {topology.env} and receives all DNS traffic",
            hint="to tear the environment down run `orchestrate destroy --all --yes`",
        )
    if region == topology.home_region and topology.multi_region:
        raise GuardRefused(
            f"{region} is the home region: it owns the ACM validation record the other regions' certificates "
            "rely on and the registry-events table",
            hint="move home_region to another member region in the topology first",
        )


def check_residency(topology: Topology, region: str) -> None:
    if region not in topology.residency:
        raise InputRejected(
            f"{topology.source}: {region} is outside residency {list(topology.residency)} of env {topology.env}: "
            "data may not be copied there"
        )
