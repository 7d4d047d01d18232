"""The drill operation: which world, where the report goes, what the command prints."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.context import Context
from orchestrator.drill.model import DrillOptions, DrillResult


@dataclass(frozen=True)
class DrillOutcome:
    result: DrillResult
    files: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.result.ok

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "files": self.files}

    def summary_lines(self) -> list[str]:
        from orchestrator.drill.report import breakdown, device_at

        r = self.result
        rto = r.rto()
        lost = sum(d.lost for d in r.devices)
        dup = sum(d.duplicated for d in r.devices)
        back = sum(1 for d in r.affected if d.rto is not None)

        def s(v: float | None) -> str:
            return "–" if v is None else f"{v:.1f}s"

        lines = [f"drill {'PASS' if r.ok else 'FAIL'}: {r.killed} killed, {back}/{len(r.affected)} devices "
                 f"reconnected to {r.survivor}",
                 f"  RTO p50 {s(rto.p50)} p95 {s(rto.p95)} max {s(rto.max)}"]
        median = device_at(r, 50)
        if median is not None:  # percentiles of the components do not add up: one device's own row does
            lines.append(f"  the device at the RTO p50, {median.thing}: {breakdown(median, 1, 's')}")
        lines += [f"  QoS 1 messages: {sum(d.published for d in r.devices)} published, {lost} lost, {dup} duplicated",
                  f"  landed: {sum(d.landed_where_acked for d in r.devices)} in the lake of the region that "
                  f"acknowledged them, {sum(d.landed_elsewhere for d in r.devices)} only in another region's, "
                  f"{sum(d.acked_never_landed for d in r.devices)} acknowledged and never landed",
                  f"  shadows found on arrival: reported {sum(1 for d in r.affected if d.shadow_reported_found)}"
                  f"/{len(r.affected)}, desired {sum(1 for d in r.affected if d.shadow_desired_found)}"
                  f"/{len(r.affected)}"]
        lines += [f"  retained configuration on arrival in {r.survivor}: "
                  f"{sum(1 for d in r.affected if d.retained_found)}/{len(r.affected)} delivered on subscribe, "
                  f"{sum(1 for d in r.affected if d.retained_current)}/{len(r.affected)} the message "
                  f"{r.killed} held",
                  f"  commands issued before the kill: {sum(d.commands_issued for d in r.devices)}, "
                  f"{sum(d.commands_delivered_before for d in r.devices)} delivered before it, "
                  f"{sum(d.commands_delivered_after for d in r.devices)} after the failover, "
                  f"{sum(d.commands_lost for d in r.devices)} lost"]
        lines += plane_summary(r)
        lines += [f"  CONNECTs in {region} (quota {r.options.connect_quota:g}/s, 1/s per client id): "
                  f"{c.get('admitted', 0)} admitted, {c.get('throttled_account', 0)} throttled by the account quota, "
                  f"{c.get('throttled_client', 0)} by the client id's" for region, c in sorted(r.admission.items())]
        lines += [f"  {st.operation}: {'ok' if st.ok else 'FAILED'} ({st.seconds:.1f}s)" for st in r.steps]
        lines += [f"  {kind}: {path}" for kind, path in self.files.items()]
        return lines


def plane_summary(r: DrillResult) -> list[str]:
    """The device-management plane demos, one line each, with the reason when not ok."""
    lines = []
    p, c, j = r.provisioned_in_survivor, r.role_alias_credentials, r.job
    if p is not None:
        lines.append(f"  provisioned by claim in {r.survivor}: {p.status.value}"
                     + (f" ({p.thing} connected with its new certificate)" if p.status.value == "ok" else f": {p.why}"))
    if c is not None:
        lines.append(f"  role alias credentials in {r.survivor}: {c.status.value}"
                     + (f" ({c.caller_arn})" if c.status.value == "ok" else f": {c.why}"))
    if j is not None:
        lines.append(f"  job {j.job}: {j.status.value}" + (f": {j.why}" if j.status.value == "skipped" else
                     f", {j.succeeded_before}/{j.targets} succeeded in {r.killed} before the kill, "
                     f"{j.completed_after} completed in {r.survivor} after, {j.executed_twice} executed twice"
                     + (f": {j.why}" if j.why else "")))
    return lines


def run_drill(app: Context, opts: DrillOptions, *, local: bool, output: str | None,
              confirm: Callable[[str, str], None]) -> DrillOutcome:
    from orchestrator.drill import report

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    directory = Path(output).resolve() if output else app.state.drill_dir(app.env, stamp)
    if local:
        from orchestrator.drill.local import LocalDrill

        result = LocalDrill(app, opts, directory).run()
    else:
        from orchestrator.drill.account import AccountDrill

        result = AccountDrill(app, opts, directory, confirm).run()
    files = report.write(result, directory)
    return DrillOutcome(result, files)
