"""`orchestrate readiness`: can each region take the traffic now? One row per rule and region.

    model.py     Status, Rule (the `@rule` registry), Finding, ReadinessReport (text, JSON, markdown)
    probe.py     what rules read through: counted AWS clients, stack outputs, thresholds, shared reads
    rules/       the rules, one module per group (registry, domain, data, replication, quotas,
                 routing, backups, resilience)
    evaluate.py  every applicable rule for every region, on a small pool
    run.py       the probe built from the CLI's Context (stack outputs from the engine)
"""

from orchestrator.readiness.evaluate import evaluate
from orchestrator.readiness.model import RULES, Finding, ReadinessReport, Status
from orchestrator.readiness.probe import Probe, Settings

__all__ = ["RULES", "Finding", "Probe", "ReadinessReport", "Settings", "Status", "evaluate"]
