"""The drill's report: markdown for a pull request or an incident review, a timeline picture (SVG,
written here), and the JSON document with every measurement."""

from __future__ import annotations

import json
import math
from pathlib import Path

from orchestrator.drill import picture as timeline
from orchestrator.drill.model import DemoStatus, DeviceOutcome, DrillResult, Projection, Stats, project


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f} s"


def _row(name: str, st: Stats) -> str:
    return f"| {name} | {_s(st.p50)} | {_s(st.p95)} | {_s(st.max)} |"


# The components of one device's RTO, in the order they happen (DeviceOutcome's fields).
COMPONENTS = (("detection", "detection"), ("ttl", "TTL"), ("backoff", "backoff"))


def split(total: float, parts: list[float], digits: int) -> tuple[str, list[str]]:
    """`total` and `parts` rounded to `digits` so that the printed parts add up to the printed total
    (largest remainder), with a part "other" appended when the parts do not add up to the total."""
    unit = 10 ** digits
    other = total - sum(parts)
    values = parts + ([other] if abs(other) * unit >= 0.5 else [])
    scaled = [v * unit for v in values]
    floors = [math.floor(v) for v in scaled]
    want = round(total * unit)
    order = sorted(range(len(values)), key=lambda i: scaled[i] - floors[i], reverse=True)
    for i in order[:max(0, want - sum(floors))]:
        floors[i] += 1
    fmt = f"{{:.{digits}f}}"
    return fmt.format(want / unit), [fmt.format(f / unit) for f in floors]


def device_at(result: DrillResult, p: float) -> DeviceOutcome | None:
    """The device whose RTO is the nearest-rank `p` percentile of the affected devices' RTOs."""
    timed = sorted((d for d in result.affected if d.rto is not None), key=lambda d: d.rto or 0.0)
    if not timed:
        return None
    return timed[max(1, math.ceil(p / 100 * len(timed))) - 1]


def breakdown(device: DeviceOutcome, digits: int = 2, unit: str = " s") -> str:
    """`RTO = detection + TTL + backoff` of one device, printed so that it adds up."""
    assert device.rto is not None
    names = [label for name, label in COMPONENTS if getattr(device, name) is not None]
    values = [float(getattr(device, name)) for name, _ in COMPONENTS if getattr(device, name) is not None]
    total, parts = split(device.rto, values, digits)
    if len(parts) > len(names):
        names.append("other")
    return f"{total}{unit} = " + " + ".join(f"{label} {v}{unit}" for label, v in zip(names, parts, strict=True))


def markdown(result: DrillResult, picture: str | None = None) -> str:
    r = result
    o = r.options
    affected = r.affected
    lost = sum(d.lost for d in r.devices)
    lost_acked = sum(d.lost_after_ack for d in r.devices)
    dup = sum(d.duplicated for d in r.devices)
    published = sum(d.published for d in r.devices)
    found_rep = sum(1 for d in affected if d.shadow_reported_found)
    found_des = sum(1 for d in affected if d.shadow_desired_found)
    restored = sum(1 for d in r.devices if d.shadow_restored)
    back = sum(1 for d in affected if d.rto is not None)
    lines = [
        f"# Game day: {r.killed} goes dark ({'PASS' if r.ok else 'FAIL'})",
        "",
        f"`orchestrate drill --local --devices {o.devices} --routing {o.routing.value} --kill {r.killed}` "
        f"(env {r.env}, domain `{r.domain}`, regions {', '.join(r.regions)}, failover control `{r.control}`)",
        "",
        f"- **{back}/{len(affected)}** devices connected to {r.killed} reconnected to **{r.survivor}**"
        + (f", the last {_s((r.all_back_at or r.killed_at) - r.killed_at)} after the kill." if r.all_back_at else "."),
        f"- QoS 1 telemetry: {published} published, **{lost} lost** ({lost_acked} of them acknowledged by the "
        f"killed broker before it died), {dup} duplicated (redelivered after a lost PUBACK).",
        f"- Shadows on arrival in {r.survivor}: last reported state found for {found_rep}/{len(affected)}, "
        f"desired state for {found_des}/{len(affected)}; after the drill {restored}/{len(r.devices)} shadows "
        "hold the device's last reported state (the device re-reports it).",
    ]
    lines += retained_and_commands(r)
    if r.refused_unregistered is not None:
        lines.append(f"- A certificate registered in the primary after the last registry sync was "
                     f"{'refused' if r.refused_unregistered else 'ACCEPTED'} by {r.survivor}.")
    if r.unattached:
        lines.append("- A device whose policy was attached in the primary after the last registry sync (the "
                     "sync missed that AttachPolicy): " + "; ".join(f"{region} {verdict}" for region, verdict
                                                                   in r.unattached.items()) + ".")
    lines += device_plane(r)
    lines += [
        "",
        "## Recovery time (devices that were on the killed region)",
        "",
        "RTO = health-check detection + DNS TTL + device backoff, per device: each device's own row "
        "(below, and in \"Devices\") adds up. The component rows of this table are percentiles of each "
        "column on its own, usually of different devices, so they do not add up to the RTO row.",
        "",
        "| | p50 | p95 | max |",
        "|---|---|---|---|",
        _row("RTO", r.rto()),
        _row("detection (kill → DNS answers the survivor), own percentiles", r.component("detection")),
        _row("TTL (answer changed → device's cached answer expired), own percentiles", r.component("ttl")),
        _row("backoff (fresh answer → connected: SDK's next attempt + handshake), own percentiles",
             r.component("backoff")),
        "",
    ]
    at_p: dict[str, tuple[DeviceOutcome, list[str]]] = {}
    for p, name in ((50, "p50"), (95, "p95"), (100, "max")):
        d = device_at(r, p)
        if d is not None:
            at_p.setdefault(d.thing, (d, []))[1].append(name)
    for d, names in at_p.values():
        which = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        lines.append(f"- the device at the RTO {which}, {d.thing}: RTO {breakdown(d)}")
    lines += [
        "",
        f"Scaled for the local drill (time scale {o.time_scale:g}): health checks every "
        f"{r.scaled.get('health_check_interval_s', 0):g} s, "
        f"failure threshold {r.scaled.get('failure_threshold', 3):g}, "
        f"TTL {r.scaled.get('ttl_s', 0):g} s (Route 53 as the DNS program declares it: 30 s, 3, 60 s). "
        "Device backoff is the SDK's own, unscaled (full jitter, 1 s to 120 s). Brokers and health checks on "
        f"port {r.scaled.get('tls_port', 0):g}" + (" (as in AWS)." if r.scaled.get("tls_port") == 443 else
                                                   " (AWS: 443, which this user may not bind here).")
        + (f" Each region's MQTT canary runs every {r.scaled['canary_period_s']:g} s (AWS: every minute) and its "
           "alarm needs 2 failed periods; a record's health check is its TCP check and that alarm together."
           if r.scaled.get("canary_period_s") else "")
        + (f" A record change reaches the answers {r.scaled['route53_propagation_s']:g} s after it is accepted "
           "(Route 53: PENDING until INSYNC, within 60 s): with `dns` failover control, failover and failback "
           "wait for it; a device moved by "
           "a health check does not (no record changes), so it is not part of the RTO above."
           if r.scaled.get("route53_propagation_s") else ""),
        "",
        "## At Route 53's real intervals (on paper, same model)",
        "",
    ]
    lines += projection_table([project(), project(interval=10.0)])
    lines += ["", "## Transitions through the orchestrator", "", "| operation | ok | seconds | steps |",
              "|---|---|---|---|"]
    for s in r.steps:
        lines.append(f"| {s.operation} | {'yes' if s.ok else 'NO'} | {s.seconds:.1f} | {s.detail} |")
    lines += ["", "## Timeline", ""]
    t0 = r.killed_at
    events = [(r.killed_at, f"{r.killed} broker killed")]
    events += [(h.at, f"health check of {h.fqdn}: {'healthy' if h.healthy else 'unhealthy'}") for h in r.health]
    events += [(c.at, f"DNS for resolvers near {c.client_region}: {c.before} → {c.after}") for c in r.dns]
    if r.all_back_at:
        events.append((r.all_back_at, f"last device reconnected to {r.survivor}"))
    events += [(s.at, f"{s.operation} through the orchestrator starts") for s in r.steps if s.at is not None]
    for at, text in sorted(events):
        lines.append(f"- t{at - t0:+.2f} s: {text}")
    if picture:
        lines += ["", f"![timeline]({picture})"]
    lines += ["", "## Devices", "", "| device | near | before | after | RTO | detection | TTL | backoff | attempts "
              "| published | lost | dup | shadow found (reported/desired) | retained config on arrival "
              "| commands before/after/lost |", "|" + "---|" * 15]
    for d in r.devices:
        found = "–" if d.shadow_reported_found is None else \
            f"{'yes' if d.shadow_reported_found else 'no'}/{'yes' if d.shadow_desired_found else 'no'}"
        lines.append(f"| {d.thing} | {d.location} | {d.before} | {d.after} | {_s(d.rto)} | {_s(d.detection)} | "
                     f"{_s(d.ttl)} | {_s(d.backoff)} | {d.attempts} | {d.published} | {d.lost} | {d.duplicated} | "
                     f"{found} | {_config(d)} | {d.commands_delivered_before}/{d.commands_delivered_after}/"
                     f"{d.commands_lost} of {d.commands_issued} |")
    return "\n".join(lines) + "\n"


def _config(d: DeviceOutcome) -> str:
    if d.retained_found is None:
        return "–"
    return "the killed region's" if d.retained_current else ("an older one" if d.retained_found else "none")


def retained_and_commands(r: DrillResult) -> list[str]:
    """What reached the devices from the cloud through the failover, as the devices measured it (c2d.py)."""
    affected = r.affected
    found = sum(1 for d in affected if d.retained_found)
    current = sum(1 for d in affected if d.retained_current)
    issued = sum(d.commands_issued for d in r.devices)
    lines = ["- Retained configuration (`drill/config/<thing>`, carried by `registry sync` under "
             f"`registry.retained_topics`): on arrival in {r.survivor}, subscribing delivered a retained message "
             f"to **{found}/{len(affected)}** devices, the message {r.killed} held to **{current}/{len(affected)}**"
             + (f"; {r.retained_changed_after_sync}'s configuration changed in {r.killed} after the last sync, "
                "so the survivor could only hold the one before (retained messages are carried by the scheduled "
                "sync, not continuously)." if r.retained_changed_after_sync else "."),
             f"- QoS 1 commands the cloud sent through {r.killed}'s command outbox just before the kill (enqueued, "
             f"then published): {issued}; **{sum(d.commands_delivered_before for d in r.devices)}** reached their "
             f"device before the kill, **{sum(d.commands_delivered_after for d in r.devices)}** after it failed "
             f"over, **{sum(d.commands_lost for d in r.devices)} lost**."]
    return lines + outbox_lines(r)


def outbox_lines(r: DrillResult) -> list[str]:
    """The command outbox through the failover (docs/adr/0002-command-outbox.md): what the survivor's
    replica of the global table held, replayed and could not have."""
    totals = r.outbox_totals()
    if r.outbox is None or totals is None:
        return []
    o = r.outbox
    slept = o.sleepers
    lines = [f"- Command outbox (a global table replicated after {o.replication_delay_s:g} s; each region's "
             f"function replays on connect): **{totals['enqueued_before_kill']}** commands enqueued in {r.killed} "
             f"before the kill; **{totals['delivered_before_kill']}** delivered before it, "
             f"**{totals['delivered_after_in_survivor']}** delivered after it in {r.survivor}, "
             f"**{totals['duplicates_dropped']}** duplicates dropped by `commandId`, **{totals['lost']} lost**, of "
             f"which **{totals['lost_within_replication_delay']}** were enqueued within the replication delay "
             f"before the kill (never replicated; {o.held_at_kill} item changes held while {r.killed} was down). "
             f"Function errors: {totals['function_errors']}."]
    if slept:
        lines.append(f"- {len(slept)} device(s) asleep while their commands were queued in {r.killed}, woken after "
                     "the failover: " + "; ".join(
                         f"{s.thing} in {s.woke_in or 'no region'}: {s.delivered_after}/{s.issued} delivered, "
                         f"{s.duplicates_dropped} duplicates dropped, {s.lost} lost" for s in slept) + ".")
    return lines


def _status(status: DemoStatus) -> str:
    return {DemoStatus.OK: "**ok**", DemoStatus.FAILED: "**FAILED**", DemoStatus.SKIPPED: "skipped"}[status]


def plane_lines(r: DrillResult) -> list[str]:
    """One line per device-management plane demo (plane_demo.py), with its reason when not ok."""
    out = []
    p = r.provisioned_in_survivor
    if p is not None:
        out.append(f"Provisioning by claim: {_status(p.status)}: a device with only a claim certificate connected "
                   f"to {r.survivor} ({p.claim_connect or '–'}), ran CreateKeysAndCertificate and RegisterThing "
                   f"with the template" + (f" (thing {p.thing})" if p.thing else "")
                   + f", then connected with its new certificate: {p.connect or '–'}"
                   + (f". Why: {p.why}." if p.why else "."))
    c = r.role_alias_credentials
    if c is not None:
        out.append(f"Credentials provider: {_status(c.status)}: {c.thing} asked {r.survivor} for credentials through "
                   f"the role alias `{c.role_alias}`"
                   + (f"; STS GetCallerIdentity with them answers `{c.caller_arn}`" if c.caller_arn else "")
                   + (f". Why: {c.why}." if c.why else "."))
    j = r.job
    if j is not None:
        if j.status is DemoStatus.SKIPPED:
            out.append(f"Job `{j.job}`: skipped: {j.why}.")
        else:
            out.append(f"Job `{j.job}`: {_status(j.status)}: {j.succeeded_before}/{j.targets} targets had SUCCEEDED "
                       f"in {r.killed} before the kill ({j.in_progress_at_kill} in progress); **{j.completed_after}** "
                       f"completed in {r.survivor}" + (f" as `{j.carried_as}`" if j.carried_as else "")
                       + f" after the failover carried it; **{j.executed_twice}** devices ran it twice, "
                       f"{j.never_completed} never completed it" + (f". Why: {j.why}." if j.why else "."))
    return out


def device_plane(r: DrillResult) -> list[str]:
    lines = plane_lines(r)
    if not lines:
        return []
    return ["", f"## The device-management plane in {r.survivor}", "",
            "Set up in the primary before the promotion and carried by its registry sync (the job by the "
            "failover's carry-jobs step); asked of the survivor after the failover:", "",
            *(f"- {line}" for line in lines)]


def projection_table(projections: list[Projection]) -> list[str]:
    out = ["| health check | TTL | detection | TTL wait p50/p95 | backoff wait p50/p95 | RTO p50 | RTO p95 | RTO max |",
           "|---|---|---|---|---|---|---|---|"]
    for p in projections:
        out.append(f"| every {p.interval:g} s, threshold {p.threshold} | {p.ttl:g} s | {p.detection:.0f} s (mean) | "
                   f"{p.ttl_wait.p50:.0f} / {p.ttl_wait.p95:.0f} s | {p.backoff.p50:.0f} / {p.backoff.p95:.0f} s | "
                   f"{p.rto.p50:.0f} s | {p.rto.p95:.0f} s | {p.rto.max:.0f} s |")
    return out


def svg(result: DrillResult, width: int = 900, height: int = 420) -> str:
    """The timeline picture (orchestrator/drill/picture.py)."""
    return timeline.svg(result, width, height)


def write(result: DrillResult, directory: Path) -> dict[str, str]:
    from orchestrator.state import atomic_write_text

    directory.mkdir(parents=True, exist_ok=True)
    picture = directory / "timeline.svg"
    atomic_write_text(picture, svg(result))
    md = directory / "report.md"
    atomic_write_text(md, markdown(result, picture.name))
    js = directory / "report.json"
    atomic_write_text(js, json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return {"markdown": str(md), "picture": str(picture), "json": str(js)}
