"""Service Quotas in each secondary versus the primary's peak use.

The IoT Core quotas (service code `iotcore`) are found by name in ListServiceQuotas (the applied
values of the account in that region). The primary's peak is the maximum of the quota's own usage
metric (`UsageMetric`, as Service Quotas names it) over `Settings.metric_window_h`; a quota without
a usage metric is compared with the primary's applied value instead (the evidence says which).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrator.readiness.model import Scope, Verdict, not_ready, ready, rule, unknown
from orchestrator.readiness.probe import Probe, Unreadable, aws_read

SERVICE = "iotcore"
# rule key -> the words a quota's name holds (lower case), and what it is called in the evidence
QUOTAS: dict[str, tuple[tuple[str, ...], str]] = {
    "connect_rate": (("connect", "per second"), "Connect requests per second"),
    "concurrent_connections": (("concurrent", "connections"), "concurrent client connections"),
    "registry_api": (("creatething",), "CreateThing requests per second (registry API)"),
    "shadow_rate": (("shadow", "per second"), "Device Shadow requests per second"),
}


def _quotas(probe: Probe, region: str) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        sq = probe.client("service-quotas", region)
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"ServiceCode": SERVICE}
        while True:
            page = aws_read(f"ListServiceQuotas {SERVICE}", lambda: sq.list_service_quotas(**kwargs))
            out.extend(page.get("Quotas") or [])
            if not page.get("NextToken"):
                return out
            kwargs["NextToken"] = page["NextToken"]
    return probe.once(("quotas", region), read)


def _find(quotas: list[dict[str, Any]], words: tuple[str, ...]) -> dict[str, Any] | None:
    for q in quotas:
        name = str(q.get("QuotaName", "")).lower().replace(" ", "")
        if all(w.replace(" ", "") in name for w in words):
            return q
    return None


def _peak(probe: Probe, quota: dict[str, Any]) -> float | None:
    usage = quota.get("UsageMetric") or {}
    if not usage.get("MetricNamespace") or not usage.get("MetricName"):
        return None
    stat = usage.get("MetricStatisticRecommendation") or "Maximum"
    dims = [{"Name": k, "Value": v} for k, v in sorted((usage.get("MetricDimensions") or {}).items())]

    def read() -> float | None:
        got = aws_read(f"GetMetricStatistics {usage['MetricNamespace']}/{usage['MetricName']}",
                       lambda: probe.client("cloudwatch", probe.topology.primary).get_metric_statistics(
                           Namespace=usage["MetricNamespace"], MetricName=usage["MetricName"], Dimensions=dims,
                           StartTime=probe.now - timedelta(hours=probe.settings.metric_window_h),
                           EndTime=probe.now, Period=3600, Statistics=[stat]))
        points = got.get("Datapoints") or []
        return max(float(p[stat]) for p in points) if points else None
    return probe.once(("peak", usage["MetricNamespace"], usage["MetricName"], tuple(map(str, dims))), read)


def _quota_rule(key: str) -> None:
    words, label = QUOTAS[key]

    def check(probe: Probe, region: str) -> Verdict:
        primary = probe.topology.primary
        try:
            here = _find(_quotas(probe, region), words)
            there = _find(_quotas(probe, primary), words)
        except Unreadable as exc:
            return unknown(f"{exc} (Service Quotas not answered for {SERVICE})")
        if here is None:
            return unknown(f"no {SERVICE} quota named like '{label}' in {region}")
        peak = _peak(probe, there) if there is not None else None
        value = float(here.get("Value") or 0)
        fix = (f"aws service-quotas request-service-quota-increase --region {region} --service-code {SERVICE} "
               f"--quota-code {here.get('QuotaCode')} --desired-value <the primary's peak or more>")
        if peak is not None:
            if value < peak:
                return not_ready(f"{label}: quota {value:g} here, the primary's peak use {peak:g}", fix)
            return ready(f"{label}: quota {value:g} >= the primary's peak {peak:g}")
        if there is None:
            return unknown(f"no {SERVICE} quota named like '{label}' in {primary} to compare with")
        bound = float(there.get("Value") or 0)
        if value < bound:
            return not_ready(f"{label}: quota {value:g} here, {bound:g} in {primary} (no usage metric: "
                             "compared with the primary's quota)", fix)
        return ready(f"{label}: quota {value:g} >= the primary's quota {bound:g} (no usage metric)")

    check.__name__ = f"quota_{key}"
    rule(f"quotas.{key}", "quotas", f"Service Quotas: {label} at least the primary's peak",
         scope=Scope.SECONDARY)(check)


for _key in QUOTAS:
    _quota_rule(_key)
