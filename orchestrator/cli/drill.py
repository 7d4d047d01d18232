"""`orchestrate drill`: a failover game day with real MQTT devices, on this machine (`--local`)."""

from __future__ import annotations

import click

from orchestrator.cli.app import command
from orchestrator.context import Context
from orchestrator.errors import ExitCode, Reported


@command("drill")
@click.option("--local", "local", is_flag=True, help="Run the game day on this machine: brokers, DNS, AWS APIs "
                                                      "(moto) and devices, started and stopped here. No account.")
@click.option("--devices", type=click.IntRange(1, 2000), default=10, show_default=True,
              help="Simulated devices (local only).")
@click.option("--routing", type=click.Choice(["failover", "latency"]), default="failover", show_default=True,
              help="The routing of the local world (local only).")
@click.option("--kill", "kill", metavar="REGION",
              help="The region that goes dark [default: the primary] (local only).")
@click.option("--duration", type=click.FloatRange(1, 3600), default=120.0, show_default=True, metavar="S",
              help="Longest wait for the devices to reconnect after the kill (local only).")
@click.option("--time-scale", type=click.FloatRange(0.001, 1.0), default=0.1, show_default=True,
              help="Health-check interval and record TTL are Route 53's times this factor (local only).")
@click.option("--failover-control", "control", type=click.Choice(["dns", "arc"]), default=None,
              help="How the local world moves traffic: DNS records, or ARC routing controls (a local ARC "
                   "cluster) [default: the env's `failover_control`] (local only).")
@click.option("--connect-quota", type=click.FloatRange(1, 1_000_000), default=500.0, show_default=True, metavar="N",
              help="IoT Core's account CONNECT/s per region the local brokers enforce (with 1/s per client id), "
                   "on the time scale; docs/field-notes-iot.md (local only).")
@click.option("--no-transitions", is_flag=True, help="Skip failover/failback after the outage (local only).")
@click.option("--output", type=click.Path(file_okay=False), help="Report directory [default: "
                                                                 ".orchestrate/drills/<env>-<time>/].")
@click.option("--yes", is_flag=True,
              help="Accepted for scripts; no drill asks today (--local never asks; --env refuses first).")
def drill(app: Context, local: bool, devices: int, routing: str, kill: str | None, duration: float,
          time_scale: float, control: str | None, connect_quota: float, no_transitions: bool, output: str | None,
          yes: bool) -> None:
    """A failover game day: kill a region, measure what devices see (RTO, lost messages, shadows).

    \b
    What exists:
      --local   the whole world on this machine: moto (AWS APIs), one mosquitto broker per
                region, a DNS server and N devices, started and stopped here; no account.
                Needs the mosquitto broker (`make drill-deps` installs it; `make drill` runs it).
                Writes report.md, report.json and timeline.svg under .orchestrate/drills/.
                After the failover it also asks the survivor to provision a device by claim,
                give a device credentials through a role alias, and finish a part-done job.
      --env E   (without --local) a real-account drill is NOT available yet: it names the
                canaries it would create and refuses (exit 2) before touching the account.
                docs/runbooks/game-day.md says how to run that part by hand.

    \b
    Examples:
      make drill                                   20 devices, failover routing, the primary dies
      orchestrate drill --local --devices 10 --kill eu-central-1 --time-scale 0.05
      orchestrate drill --local --failover-control arc --json
    """
    from orchestrator.cli.options import confirmer, known_region
    from orchestrator.drill.model import DrillOptions, Routing
    from orchestrator.drill.run import run_drill

    if kill:
        known_region(kill, "--kill")
    opts = DrillOptions(devices=devices, routing=Routing(routing), kill=kill, duration=duration,
                        time_scale=time_scale, transitions=not no_transitions, control=control,
                        connect_quota=connect_quota)
    outcome = run_drill(app, opts, local=local, output=output, confirm=confirmer(yes))
    if app.json_output:
        app.console.document(outcome.to_json())
    else:
        for line in outcome.summary_lines():
            app.console.result(line)
    if not outcome.ok:
        raise Reported(ExitCode.FAILED)
