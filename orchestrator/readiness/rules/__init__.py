"""The readiness rules, one module per group; importing this package registers them all."""

from orchestrator.readiness.rules import backups, data, domain, quotas, registry, replication, resilience, routing

__all__ = ["backups", "data", "domain", "quotas", "registry", "replication", "resilience", "routing"]
