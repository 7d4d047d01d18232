"""`orchestrate device-check`: score a device's reconnect profile for a regional failover."""

from __future__ import annotations

import click

from orchestrator.cli.app import command
from orchestrator.context import Context
from orchestrator.errors import ExitCode, Reported


@command("device-check")
@click.argument("profile", type=click.Path(dir_okay=False))
@click.option("--devices", type=click.IntRange(1, 2_000_000), default=10_000, show_default=True,
              help="Fleet size for the projected RTO.")
@click.option("--connect-quota", type=click.FloatRange(1, 1_000_000), default=500.0, show_default=True, metavar="N",
              help="The survivor's account CONNECT/s (IoT Core quota; docs/field-notes-iot.md).")
def device_check(app: Context, profile: str, devices: int, connect_quota: float) -> None:
    """Score a device's reconnect profile (SNI, DNS re-resolved per attempt, jittered capped backoff,
    resubscribe on sessionPresent=0) and say what to change. Exit 1 when it does not conform.

    PROFILE is a YAML or JSON file of the device SDK's settings, e.g.

    \b
      endpoint: iot.example.com
      sni: true
      resolve_on_reconnect: true
      retry_jitter_mode: FULL          # FULL | DECORRELATED | EQUAL | NONE | DEFAULT
      min_reconnect_delay_ms: 1000
      max_reconnect_delay_ms: 10000
      resubscribe_on_session_lost: true

    Missing settings count as the AWS IoT device SDK's defaults. The projection is the fleet model
    (docs/performance.md, "Fleet scale") at Route 53's real intervals with this backoff.

    \b
    Examples:
      orchestrate device-check device.yaml
      orchestrate device-check device.json --devices 100000 --connect-quota 3000 --json
    """
    from pathlib import Path

    from orchestrator.drill.profile import DeviceProfile, score

    result = score(DeviceProfile.load(Path(profile)), devices=devices, connect_quota=connect_quota)
    if app.json_output:
        app.console.document(result.to_json())
    else:
        app.console.result(f"device profile {'conforms' if result.ok else 'does NOT conform'}: "
                           f"{result.score}/{len(result.findings)} checks")
        for f in result.findings:
            app.console.result(f"  {'ok  ' if f.ok else 'FIX '} {f.check}" + ("" if f.ok else f": {f.change}"))
        p = result.projection
        if p is not None and p.rto.p50 is not None and p.rto.p95 is not None:
            parts = ", ".join(f"{k} {getattr(p, k).p95:.0f} s" for k in ("detection", "dns", "admission", "backoff"))
            app.console.result(f"  projected RTO at {p.devices:,} devices, {p.connect_quota:g} CONNECT/s: p50 "
                               f"{p.rto.p50:.0f} s, p95 {p.rto.p95:.0f} s (p95s: {parts})")
            if p.rto.p95 > 60:
                app.console.result("  detection and DNS are not the device's: p95 <= 60 s needs faster health checks "
                                   "and a shorter TTL than Route 53's 30 s x 3 / 60 s (docs/performance.md, "
                                   "\"Fleet scale\")")
        elif p is None:
            app.console.result("  no projection: without jitter the fleet's retries are synchronised")
    if not result.ok:
        raise Reported(ExitCode.FAILED)
