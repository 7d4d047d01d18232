"""`orchestrate drill --local`: the whole game day on this machine, started and stopped here.

The world: a moto server (the AWS APIs), the real programs applied to it by `LocalEngine`, one
mosquitto per region on its own loopback address, the DNS server answering from the DNS stack's
records with Route 53's rules and real health checks, each region's MQTT canary (the probe its
scheduled function runs in AWS, once per scaled minute against that region's broker, feeding the
region's alarm, which `drill/world/cloudwatch.py` evaluates because moto does not; the CLOUDWATCH_METRIC
half of each record's health check follows it), the devices, and the regions' shadow services.
The orchestrator's own lifecycle (promote-secondary, failover, failback) moves traffic, through the
same code as `orchestrate promote-secondary/failover/failback`.

Timeline: set-up (stacks up, devices registered in the primary, promotion: registry sync,
replication, DNS) -> brokers, canaries, DNS and devices start -> warm-up (until both canary alarms
are OK) -> the kill -> health checks and
TTL move the devices -> `failover` (records follow the outage) -> the region comes back ->
`failback` -> devices stop -> measurements.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.aws import AwsContext, client
from orchestrator.console import Console
from orchestrator.context import Context
from orchestrator.drill.model import (
    CredentialsDemo,
    DemoStatus,
    DeviceOutcome,
    DrillOptions,
    DrillResult,
    JobDemo,
    OutboxDemo,
    ProvisionDemo,
    Routing,
    SleeperCommands,
    StepRecord,
)
from orchestrator.drill.plane_demo import JOB, ROLE_ALIAS
from orchestrator.drill.world.c2d import COMMAND_PREFIX, COMMANDS_PER_DEVICE, CONFIG_PREFIX, config_topic
from orchestrator.errors import InputRejected, OperationFailed
from orchestrator.registry import outbox

if TYPE_CHECKING:  # the world's parts load only when the drill runs (check_prerequisites)
    from orchestrator.drill.plane_demo import JobDevices, PlaneSetUp
    from orchestrator.drill.world.admission import Admission
    from orchestrator.drill.world.arc import ArcCluster
    from orchestrator.drill.world.broker import BrokerSpec, TrustStore
    from orchestrator.drill.world.c2d import RetainedMirror
    from orchestrator.drill.world.cloudwatch import DrillCanary
    from orchestrator.drill.world.dns import DnsServer, Route53Answers
    from orchestrator.drill.world.engine import LocalEngine
    from orchestrator.drill.world.fleet import Device, Fleet
    from orchestrator.drill.world.iotdoor import RegionDoor
    from orchestrator.drill.world.netstub import DeviceNetwork
    from orchestrator.drill.world.outbox_world import OutboxRegion, OutboxSender
    from orchestrator.drill.world.pki import KeyPair
    from orchestrator.drill.world.services import RegionServices

DRILL_ENV = "drill"
POLICY = "drill-device-policy"
UNATTACHED = "drill-unattached"  # its policy attachment reaches the primary after the promotion's sync
TELEMETRY_WARM_UP = 4  # messages per device before the kill
SLEEPERS = 2  # devices asleep while the cloud queues commands for them in the region that dies (outbox_world.py)
# the global table's replication delay: "usually within a second" (global_tables.py), on the drill's
# time scale like every other AWS interval, never below what this machine's own round trips take
REPLICATION_DELAY_S = 1.0
MIN_REPLICATION_DELAY_S = 0.25



def check_prerequisites() -> None:
    """Clear messages for what the local world needs, before anything starts (exit 2)."""
    from orchestrator.drill.world.broker import mosquitto_binary

    missing = []
    for module, package in (("awscrt", "awsiotsdk"), ("dnslib", "dnslib"), ("cryptography", "cryptography"),
                            ("moto", "moto[server]")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise InputRejected(f"the local drill needs the Python packages {', '.join(missing)}",
                            hint="run `make drill`, or pip install -e '.[drill]'")
    mosquitto_binary()


def choose_regions(app: Context, opts: DrillOptions) -> tuple[str, str, str]:
    """(primary, secondary, killed) from the environment's topology."""
    topology = app.topology()
    primary = topology.primary
    candidates = [*topology.secondaries, *[r for r in topology.residency if r != primary]]
    secondary = next((r for r in candidates if r != primary), None)
    if secondary is None:
        raise InputRejected(f"env {topology.env} allows no second region (residency: "
                            f"{', '.join(topology.residency)})", hint="add one to residency in the topology")
    killed = opts.kill or primary
    if killed not in (primary, secondary):
        raise InputRejected(f"--kill {killed}: the drill's regions are {primary} and {secondary}")
    return primary, secondary, killed


def _policy_document() -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect",
         "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
        {"Effect": "Allow", "Action": "iot:Publish",  # its command acknowledgements (docs/devices.md)
         "Resource": f"arn:aws:iot:*:*:topic/{outbox.ACK_PREFIX}${{iot:Connection.Thing.ThingName}}"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": ["arn:aws:iot:*:*:topic/dt/${iot:Connection.Thing.ThingName}/*",
                      "arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]},
        {"Effect": "Allow", "Action": "iot:Receive",  # its retained configuration and its commands (c2d.py)
         "Resource": [f"arn:aws:iot:*:*:topic/{CONFIG_PREFIX}${{iot:Connection.Thing.ThingName}}",
                      f"arn:aws:iot:*:*:topic/{COMMAND_PREFIX}${{iot:Connection.Thing.ThingName}}"]},
        {"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate",  # credentials (plane_demo.py)
         "Resource": f"arn:aws:iot:*:*:rolealias/{ROLE_ALIAS}"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": ["arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*",
                      f"arn:aws:iot:*:*:topicfilter/{CONFIG_PREFIX}${{iot:Connection.Thing.ThingName}}",
                      f"arn:aws:iot:*:*:topicfilter/{COMMAND_PREFIX}${{iot:Connection.Thing.ThingName}}"]}]})


def publish_config(data: Any, thing: str, version: int) -> None:
    """The device's configuration as a retained message in a region (IoT's Publish API, retain=true)."""
    data.publish(topic=config_topic(thing), qos=1, retain=True,
                 payload=json.dumps({"thing": thing, "version": version, "mode": "drill"}).encode())


def _config_version(payload: bytes) -> int | None:
    try:
        version = json.loads(payload).get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, int) else None


def location_of_thing(thing: str, locations: list[str]) -> str:
    return locations[int(thing.rsplit("-", 1)[1])]


def register(iot: Any, thing: str, cert_pem: str, *, policy: bool = True) -> str:
    """A thing with its certificate registered without a CA (SNI_ONLY) and (unless `policy` is
    False) the device policy attached to the certificate."""
    iot.create_thing(thingName=thing)
    cert = iot.register_certificate_without_ca(certificatePem=cert_pem, status="ACTIVE")
    if policy:
        iot.attach_policy(policyName=POLICY, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    return str(cert["certificateId"])


class _World:
    """What one local drill holds: the world's set-up fills it in, the game day's steps read it (and
    add what they measure)."""

    # the run
    started: float
    regions: tuple[str, str]
    control: str
    steps: list[StepRecord]
    # AWS on this machine and the platform applied to it
    arc: ArcCluster | None
    endpoint: str
    aws: AwsContext
    r53: Any
    zone_id: str
    engine: LocalEngine
    dctx: Context
    domain: str
    iot: dict[str, Any]
    data: dict[str, Any]
    account: str
    # the devices' identities and the device-management plane
    locations: list[str]
    keys: dict[str, KeyPair]
    cert_ids: dict[str, str]
    sleeper_keys: dict[str, KeyPair]
    unattached: KeyPair
    unattached_id: str
    unsynced: KeyPair
    claim: KeyPair
    plane: PlaneSetUp
    changed_after_sync: str | None
    # the regions: brokers behind their front doors, services, outbox, canaries
    ca: KeyPair
    addresses: dict[str, str]
    tls_port: int
    service_port: int
    endpoints: dict[str, str]
    brokers: dict[str, BrokerSpec]
    trust: dict[str, TrustStore]
    doors: dict[str, RegionDoor]
    services: dict[str, RegionServices]
    mirrors: dict[str, RetainedMirror]
    delay: float
    outboxes: dict[str, OutboxRegion]
    commands: OutboxSender
    cloudwatch: dict[str, Any]
    canary: DrillCanary
    # DNS and the devices' network
    sources: dict[str, str]
    answers: Route53Answers
    dns: DnsServer
    region_of_address: dict[str, str]
    admission: Admission
    net: DeviceNetwork
    devices: list[Device]
    by_thing: dict[str, Device]
    sleepers: list[Device]
    fleet: Fleet
    samples: list[tuple[float, dict[str, int], dict[str, int]]]
    sampler_stop: threading.Event
    sampler: threading.Thread
    # the game day's measurements
    before: dict[str, str | None]
    unattached_verdicts: dict[str, str]
    refused_unattached: bool | None
    job_devices: JobDevices
    killed_at: float
    all_back: float | None
    held_at_kill: int
    refused: bool | None
    demos: tuple[ProvisionDemo, CredentialsDemo, JobDemo]

    def __init__(self, cleanup: ExitStack, primary: str, secondary: str, killed: str, survivor: str) -> None:
        self.cleanup = cleanup
        self.primary, self.secondary, self.killed, self.survivor = primary, secondary, killed, survivor


class LocalDrill:
    def __init__(self, app: Context, opts: DrillOptions, out_dir: Path) -> None:
        self.app, self.opts = app, opts
        self.run_dir = out_dir
        self.notify: Callable[[str], None] = app.notify
        from orchestrator.drill.world.procs import Processes

        self.procs = Processes(self.run_dir / "logs")

    # -- the world ------------------------------------------------------------------------------------
    def _moto(self) -> str:
        from orchestrator.drill.world.procs import STRICT_MOTO, free_port, wait_for_port

        port = free_port()
        proc = self.procs.start("moto", [sys.executable, "-c", STRICT_MOTO, "-H", "127.0.0.1", "-p", str(port)])
        wait_for_port("127.0.0.1", port, 60, proc, "the moto server")
        return f"http://127.0.0.1:{port}"

    def _drill_context(self, endpoint: str, engine: Any, control: str) -> Context:
        from orchestrator import topology as topo_mod

        source = self.app.topology()
        doc = source.to_document()
        doc.update(secondaries=[], routing="single", failover_control=control)
        # the devices' retained configuration is carried like any configured prefix (registry sync)
        registry = doc.setdefault("registry", {})
        registry["retained_topics"] = [*(p for p in registry.get("retained_topics") or [] if p != CONFIG_PREFIX),
                                       CONFIG_PREFIX]
        registry["command_outbox"] = True  # the devices' commands go through the outbox (outbox_world.py)
        project = self.run_dir / "project"
        (project / "stacks").mkdir(parents=True, exist_ok=True)
        (project / "Pulumi.yaml").write_text("name: iot-platform\nruntime: python\n")
        config = project / "stacks" / f"{DRILL_ENV}.topology.yaml"
        topo_mod.save(topo_mod.parse(doc, env=DRILL_ENV, source=config.name), config)
        quiet = Console(out=lambda _t: None, err=lambda t: self.app.console.debug(t.rstrip("\n")))
        return Context(env=DRILL_ENV, project_dir=project, config_path=config,
                       backend_url=f"file://{project / '.pulumi-state'}", endpoint_url=endpoint,
                       console=quiet, engine_factory=lambda _c: engine)

    def run(self) -> DrillResult:
        check_prerequisites()
        primary, secondary, killed = choose_regions(self.app, self.opts)
        survivor = secondary if killed == primary else primary
        interrupted: list[int] = []
        previous = _trap_sigterm(interrupted)
        with ExitStack() as cleanup:
            cleanup.callback(self.procs.stop_all)
            cleanup.callback(lambda: _restore_sigterm(previous))
            return self._run(cleanup, primary, secondary, killed, survivor)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, cleanup: ExitStack, primary: str, secondary: str, killed: str, survivor: str) -> DrillResult:
        w = _World(cleanup, primary, secondary, killed, survivor)
        # the world, in the order its parts depend on each other
        self._aws(w)
        self._up_primary(w)
        self._promote(w)
        self._brokers(w)
        self._region_services(w)
        self._outbox(w)
        self._canaries(w)
        self._dns(w)
        self._devices(w)
        self._start_devices(w)
        # the game day
        self._warm_up(w)
        self._kill(w)
        self._transitions(w)
        self._stop_devices(w)
        return self._measure(w)

    # -- the world's set-up -----------------------------------------------------------------------------
    def _aws(self, w: _World) -> None:
        """ARC's cluster (when the control is ARC), the moto server, the hosted zone, the engine that
        applies the real programs to them and the drill's own environment."""
        from orchestrator.drill.world.engine import LocalEngine, share_route53_rate

        opts = self.opts
        w.started = time.time()
        w.regions = (w.primary, w.secondary)
        w.control = opts.control or self.app.topology().failover_control.value
        self.notify(f"drill: local world for {w.primary} + {w.secondary} in {self.run_dir} (failover control "
                    f"`{w.control}`)")
        w.arc = None
        if w.control == "arc":  # ARC's cluster data plane, on this machine (five regional endpoints)
            from orchestrator.drill.world.arc import ArcCluster

            # safety-rule wait periods pass on the drill's time scale, as health checks and TTLs do
            w.arc = w.cleanup.enter_context(ArcCluster(time_scale=opts.time_scale).serve())
        w.endpoint = self._moto()
        w.aws = AwsContext(endpoint_url=w.endpoint)
        topology = self.app.topology()
        w.r53 = client(w.aws, "route53", "us-east-1")
        w.zone_id = w.r53.create_hosted_zone(Name=topology.hosted_zone, CallerReference=f"drill-{w.started}")[
            "HostedZone"]["Id"].split("/")[-1]
        w.engine = LocalEngine(w.aws, w.zone_id, w.arc, time_scale=opts.time_scale)
        # one account: the product's Route 53 readers take from the engine's request-rate buckets
        # (the DNS stand-in's client, made above, is Route 53's name servers: not under it)
        w.cleanup.callback(share_route53_rate(w.endpoint, w.engine.route53_rate))
        w.dctx = self._drill_context(w.endpoint, w.engine, w.control)
        w.domain = w.dctx.topology().domain

    def _up_primary(self, w: _World) -> None:
        """1. the primary as it runs today (single region), devices registered there."""
        from orchestrator.drill import plane_demo
        from orchestrator.drill.world import pki
        from orchestrator.stacks.graph import up_selection
        from orchestrator.stacks.runner import Runner

        opts, primary, regions, aws = self.opts, w.primary, w.regions, w.aws
        dtopo = w.dctx.topology()
        self.notify(f"drill: up {primary} and DNS (single region), register {opts.devices} devices")
        report = Runner(w.engine, dtopo, w.dctx.state, notify=w.dctx.notify).up(up_selection(dtopo, primary))
        if not report.ok:
            raise OperationFailed(f"drill set-up: up of {primary} failed")
        w.iot = iot = {r: client(aws, "iot", r) for r in regions}
        w.data = data = {r: client(aws, "iot-data", r) for r in regions}
        iot[primary].create_policy(policyName=POLICY, policyDocument=_policy_document())
        w.locations = [regions[i % 2] if opts.routing is Routing.LATENCY else primary for i in range(opts.devices)]
        w.keys, w.cert_ids = {}, {}
        for i in range(opts.devices):
            thing = f"drill-device-{i:04d}"
            w.keys[thing] = pki.device_certificate(thing)
            w.cert_ids[thing] = register(iot[primary], thing, w.keys[thing].cert_pem)
            data[primary].update_thing_shadow(thingName=thing, payload=json.dumps(
                {"state": {"desired": {"interval_ms": int(opts.publish_interval * 1000), "mode": "drill"}}}).encode())
            publish_config(data[primary], thing, 1)  # through the Publish API, as the platform's backend does
        # devices that will be asleep while commands are queued for them in the killed region (the primary)
        w.sleeper_keys = {f"drill-sleeper-{i:04d}": pki.device_certificate(f"drill-sleeper-{i:04d}")
                          for i in range(SLEEPERS if w.killed == primary else 0)}
        for thing, pair in w.sleeper_keys.items():
            register(iot[primary], thing, pair.cert_pem)
        # a device whose policy is attached in the primary only after the promotion's sync: the sync
        # missed that AttachPolicy, so the secondary's front door must refuse its CONNECT
        w.unattached = pki.device_certificate(UNATTACHED)
        w.unattached_id = register(iot[primary], UNATTACHED, w.unattached.cert_pem, policy=False)
        # the device-management plane, as operators set it up in the primary (plane_demo.py): the
        # promotion's sync carries it; the job targets the devices of the region that will die
        w.claim = pki.device_certificate("drill-claim")
        job_targets = (sorted(t for t in w.keys if location_of_thing(t, w.locations) == w.killed)
                       if w.killed == primary else [])
        w.plane = plane_demo.set_up(iot[primary], client(aws, "iam", primary), w.claim.cert_pem, POLICY, job_targets)

    def _promote(self, w: _World) -> None:
        """2. promote-secondary through the lifecycle (registry sync, replication, DNS with health
        checks), then what changes in the primary after the promotion's sync."""
        from orchestrator.drill.world import pki
        from orchestrator.operations.lifecycle import Lifecycle
        from orchestrator.topology import RoutingMode

        opts, primary, iot = self.opts, w.primary, w.iot
        self.notify(f"drill: promote-secondary {w.secondary} --routing {opts.routing.value}")
        w.steps = steps = []
        steps.append(self._step("promote-secondary", lambda: Lifecycle(w.dctx, sync_rate=1000).promote(
            w.secondary, RoutingMode(opts.routing.value))))
        if not steps[-1].ok:
            raise OperationFailed(f"drill set-up: promote-secondary failed: {steps[-1].detail}")
        w.unsynced = pki.device_certificate("drill-unsynced")  # registered after the sync: unknown in the secondary
        register(iot[primary], "drill-unsynced", w.unsynced.cert_pem)
        # one device's configuration changes after the sync: the secondary still holds the old one
        # (carried by the next scheduled sync: the local world runs no replication function)
        candidates = ([t for t in w.keys if location_of_thing(t, w.locations) == w.killed]
                      if w.killed == primary else [])
        w.changed_after_sync = candidates[-1] if len(candidates) >= 2 else None
        if w.changed_after_sync:
            publish_config(w.data[primary], w.changed_after_sync, 2)
        iot[primary].attach_policy(policyName=POLICY, target=iot[primary].describe_certificate(
            certificateId=w.unattached_id)["certificateDescription"]["certificateArn"])

    def _brokers(self, w: _World) -> None:
        """3. brokers (TLS, the domain's certificate, trusting the region's registered certificates),
        each behind its region's IoT front door."""
        from orchestrator.drill.world import pki
        from orchestrator.drill.world.broker import BrokerSpec, TrustStore
        from orchestrator.drill.world.iot_issuer import issuing_ca_pem
        from orchestrator.drill.world.procs import free_port, port_free_on
        from orchestrator.stacks import wiring
        from orchestrator.stacks.graph import region_stack

        regions, cleanup = w.regions, w.cleanup
        w.ca, ca_key = pki.local_ca()
        server = pki.server_certificate(w.ca, ca_key, w.domain)
        w.addresses = {r: f"127.0.0.{2 + i}" for i, r in enumerate(regions)}
        # 443: the port IoT Core serves MQTT on with ALPN and the port the DNS program's health checks
        # name, so the checks probe what they would probe in AWS; 8883 (or any free port) when this
        # user may not bind it
        w.tls_port = (next((p for p in (443, 8883) if port_free_on(list(w.addresses.values()), p)), None)
                      or free_port())
        w.service_port = free_port()
        w.endpoints = {r: wiring.validate_region_outputs(name, r, w.engine.outputs(name) or {}).endpoint
                       for r in regions for name in [region_stack(w.dctx.topology(), r).name]}
        w.brokers, w.trust = {}, {}
        for r in regions:
            # devices reach mosquitto only through the region's IoT front door (iotdoor.RegionDoor)
            spec = BrokerSpec(r, w.addresses[r], w.tls_port, w.service_port, self.run_dir / "brokers" / r,
                              tls_listener=False)
            spec.write_config(server_cert=server.cert_pem, server_key=server.key_pem)
            w.brokers[r] = spec
            w.trust[r] = TrustStore(spec.trust_directory)
            w.trust[r].add(issuing_ca_pem())  # certificates IoT issues (CreateKeysAndCertificate): iot_issuer.py
            w.trust[r].refresh(w.iot[r])
        trust_stop = threading.Event()
        follower = threading.Thread(target=self._follow_registries, args=(w, trust_stop), name="drill-trust",
                                    daemon=True)
        follower.start()
        cleanup.callback(follower.join, 5)
        cleanup.callback(trust_stop.set)

        w.account = client(w.aws, "sts", w.primary).get_caller_identity()["Account"]
        w.doors = {}

        def stop_doors() -> None:
            for door in w.doors.values():
                door.stop()

        cleanup.callback(stop_doors)
        for r in regions:
            self._start_broker(w, r)

    def _follow_registries(self, w: _World, stop: threading.Event) -> None:
        """What a sync registers reaches the running brokers."""
        while not stop.wait(1.0):
            for r in w.regions:
                try:
                    w.trust[r].refresh(w.iot[r])
                except Exception as exc:  # noqa: BLE001 - the next round retries; the drill goes on
                    self.app.console.debug(f"trust refresh {r}: {exc}")

    def _start_broker(self, w: _World, r: str) -> None:
        """The region's IoT Core: mosquitto behind its front door."""
        from orchestrator.drill.world.broker import mosquitto_binary
        from orchestrator.drill.world.iotdoor import RegionDoor
        from orchestrator.drill.world.procs import wait_for_port

        address = w.addresses[r]
        proc = self.procs.start(f"broker-{r}", [mosquitto_binary(), "-c", str(w.brokers[r].config_path)])
        wait_for_port(address, w.service_port, 10, proc, f"mosquitto for {r}")
        w.doors[r] = RegionDoor(r, address, w.tls_port, (address, w.service_port), domain=w.domain,
                                cert_file=w.brokers[r].directory / "server.pem",
                                key_file=w.brokers[r].directory / "server.key", trust=w.trust[r], iot=w.iot[r],
                                account=w.account, time_scale=self.opts.time_scale).start()
        wait_for_port(address, w.tls_port, 10, proc, f"the IoT front door of {r}")

    def _kill_broker(self, w: _World, r: str) -> None:
        """The region's outage: its broker and its door."""
        self.procs.kill(f"broker-{r}")
        w.doors[r].stop()

    def _region_services(self, w: _World) -> None:
        """Each region's shadow services, and the retained messages its broker serves (c2d.py)."""
        from orchestrator.drill.world.c2d import RetainedMirror
        from orchestrator.drill.world.services import RegionServices

        w.services = {r: RegionServices(r, w.addresses[r], w.service_port, w.aws) for r in w.regions}
        for s in w.services.values():
            w.cleanup.callback(s.stop)
            s.start()
        w.mirrors = {r: RetainedMirror(r, w.addresses[r], w.service_port, w.data[r]) for r in w.regions}
        for m in w.mirrors.values():
            w.cleanup.callback(m.stop)
            m.start()

    def _outbox(self, w: _World) -> None:
        """The command outbox: each region's function on its broker's events, the cloud's sender in
        the killed region, the global table's replication on the drill's time scale."""
        from orchestrator.drill.world import global_tables
        from orchestrator.drill.world.outbox_world import OutboxRegion, OutboxSender
        from programs.contract import OutboxNames
        from programs.replication import outbox_rule_sql

        w.delay = max(MIN_REPLICATION_DELAY_S, REPLICATION_DELAY_S * self.opts.time_scale)
        global_tables.control(w.endpoint, delay_s=w.delay)
        outbox_table = OutboxNames.of(DRILL_ENV, w.primary).table
        ddb = {r: client(w.aws, "dynamodb", r) for r in w.regions}
        w.outboxes = {r: OutboxRegion(r, w.addresses[r], w.service_port, ddb[r], outbox_table, outbox_rule_sql())
                      for r in w.regions}
        for o in w.outboxes.values():
            w.cleanup.callback(o.stop)
            o.start()
        w.commands = OutboxSender(w.killed, w.addresses[w.killed], w.service_port, ddb[w.killed], outbox_table)
        w.cleanup.callback(w.commands.stop)
        w.commands.start()

    def _canaries(self, w: _World) -> None:
        """The MQTT canary of each region (what its scheduled function does in AWS), feeding its alarm."""
        from orchestrator.drill.world.cloudwatch import DrillCanary

        w.cloudwatch = {r: client(w.aws, "cloudwatch", r) for r in w.regions}  # made once: DNS reads alarms per answer
        w.canary = DrillCanary(DRILL_ENV, w.domain, [_canary_target(w.engine, r, w.addresses[r], w.tls_port,
                                                                    w.ca.cert_pem, w.cloudwatch[r])
                                                     for r in w.regions],
                               self.opts.time_scale)
        w.cleanup.callback(w.canary.stop)
        w.canary.start()

    def _dns(self, w: _World) -> None:
        """4. DNS from the DNS stack's records, with Route 53's rules and the regions' health."""
        from orchestrator.drill.world.dns import DnsServer, Route53Answers

        arc, engine = w.arc, w.engine
        w.sources = {r: f"127.0.1.{1 + i}" for i, r in enumerate(w.regions)}
        w.answers = Route53Answers(w.r53, w.zone_id, w.domain, {w.endpoints[r]: w.addresses[r] for r in w.regions},
                                   w.tls_port, self.opts.time_scale, lambda client_region, record_region: 0.0
                                   if client_region == record_region else 1.0,
                                   control_state=lambda check_id: arc.states().get(
                                       engine.control_checks.get(check_id, "")) if arc else None,
                                   alarm_of=engine.alarm_checks.get,
                                   alarm_state=lambda region, name: _alarm_state(w.cloudwatch[region], name),
                                   propagation=engine.propagation)
        w.cleanup.callback(w.answers.stop)
        w.dns = DnsServer(w.answers, {v: k for k, v in w.sources.items()})
        w.dns.start()
        w.cleanup.callback(w.dns.stop)
        w.answers.records(max_age=0)

    def _devices(self, w: _World) -> None:
        """The devices' network (their resolvers, IoT's connect quota) and the devices themselves."""
        from orchestrator.drill.world.admission import Admission, Verdict
        from orchestrator.drill.world.dns import query
        from orchestrator.drill.world.fleet import Device, Fleet
        from orchestrator.drill.world.netstub import DeviceNetwork

        opts, primary, cleanup = self.opts, w.primary, w.cleanup
        location_of = {f"drill-device-{i:04d}": w.locations[i] for i in range(opts.devices)}
        location_of.update({t: primary for t in w.sleeper_keys})
        w.region_of_address = region_of_address = {v: k for k, v in w.addresses.items()}
        w.admission = admission = Admission(account_rate=opts.connect_quota, time_scale=opts.time_scale)
        dns_port, sources = w.dns.port, w.sources
        w.net = net = DeviceNetwork(lambda dev, name: query(("127.0.0.1", dns_port), name,
                                                            sources[location_of.get(dev, primary)]),
                                    admit=lambda dev, address: admission.admit(
                                        region_of_address.get(address, address), dev) is Verdict.ADMITTED)
        net.start()
        cleanup.callback(net.stop)
        w.devices = [Device(t, w.keys[t], location_of[t], w.ca.cert_pem, w.domain, w.tls_port, (net.host, net.port),
                            lambda dev: region_of_address.get(net.routes.get(dev, ""))) for t in w.keys]
        w.by_thing = {d.thing: d for d in w.devices}
        w.sleepers = [Device(t, w.sleeper_keys[t], primary, w.ca.cert_pem, w.domain, w.tls_port,
                             (net.host, net.port), lambda dev: region_of_address.get(net.routes.get(dev, "")))
                      for t in w.sleeper_keys]
        cleanup.callback(self._stop_sleepers, w)
        w.fleet = Fleet(w.devices, opts.publish_interval)
        cleanup.callback(w.fleet.stop)
        w.samples = []
        w.sampler_stop = threading.Event()
        w.sampler = threading.Thread(target=self._sample, args=(w,), name="drill-sampler", daemon=True)

    def _stop_sleepers(self, w: _World) -> None:
        for sleeper in w.sleepers:
            sleeper.stop()

    def _sample(self, w: _World) -> None:
        """Every 0.25 s: devices connected per region, messages/s over the last second."""
        window: list[dict[str, int]] = []
        while not w.sampler_stop.wait(0.25):
            now = time.time()
            window = [*window[-3:], {r: len(w.services[r].received) for r in w.regions}]
            span = 0.25 * max(1, len(window) - 1)
            rate = {r: round((window[-1][r] - window[0][r]) / span) for r in w.regions}
            w.samples.append((now, w.fleet.connected(), rate))

    def _start_devices(self, w: _World) -> None:
        """The devices connect to the domain, the sleepers too; the sampler starts."""
        self.notify(f"drill: {self.opts.devices} devices connecting to {w.domain} (brokers on "
                    f"{', '.join(f'{r} {a}:{w.tls_port}' for r, a in w.addresses.items())})")
        w.fleet.start()
        for sleeper in w.sleepers:
            sleeper.start()
        w.sampler.start()
        w.cleanup.callback(w.sampler.join, 5)
        w.cleanup.callback(w.sampler_stop.set)

    # -- the game day ------------------------------------------------------------------------------------
    def _warm_up(self, w: _World) -> None:
        """Until every device is connected, publishing, reported and configured and both canary
        alarms are OK; then what is measured before the kill."""
        from orchestrator.drill import plane_demo
        from orchestrator.drill.world.iotdoor import client_context, connect_verdict

        opts, fleet, devices, canary = self.opts, w.fleet, w.devices, w.canary
        _wait(lambda: sum(fleet.connected().values()) == opts.devices, 30 + opts.devices * 0.2,
              f"not every device connected within the warm-up: {fleet.connected()}")
        fleet.publishing.set()
        time.sleep(TELEMETRY_WARM_UP * opts.publish_interval)
        _wait(lambda: all(d.log.last_report_accepted is not None for d in devices), 20 + opts.devices * 0.2,
              "not every device's shadow report was accepted during the warm-up")
        _wait(lambda: all(d.log.config for d in devices), 10 + opts.devices * 0.05,
              "not every device received its retained configuration during the warm-up")
        changed = w.changed_after_sync
        if changed:  # the changed configuration reached its device before the kill
            _wait(lambda: any(_config_version(p) == 2 for _t, _r, _f, p in w.by_thing[changed].log.config),
                  10, None) or _fail(f"the configuration changed after the sync did not reach {changed} "
                                     f"during the warm-up (received: {w.by_thing[changed].log.config[-3:]}; "
                                     f"mirrors: {[m.errors[-1:] for m in w.mirrors.values()]})")
        # Route 53 sends traffic to a region only while its canary alarm is OK: both must be before the kill
        _wait(lambda: set(canary.states().values()) == {"OK"}, 10 + 4 * canary.interval,
              "the MQTT canary alarms did not reach OK during the warm-up: "
              f"{canary.states()} (canary runs: {canary.results[-4:]})")
        w.before = {d.thing: d.region for d in devices}
        # the policy attachment the sync missed: accepted in the primary, refused at CONNECT in the secondary
        with client_context(w.ca.cert_pem, w.unattached.cert_pem, w.unattached.key_pem) as unattached_tls:
            w.unattached_verdicts = {r: connect_verdict(w.addresses[r], w.tls_port, w.domain, UNATTACHED,
                                                        unattached_tls)
                                     for r in w.regions}
        w.refused_unattached = (None if w.unattached_verdicts[w.primary] != "accepted" else
                                w.unattached_verdicts[w.secondary] == "refused: not authorized")

        # the rollout, part-done in the primary: SUCCEED_SHARE of its targets install it, one more starts
        jobs_data = {r: client(w.aws, "iot-jobs-data", r) for r in w.regions}
        w.job_devices = job_devices = plane_demo.JobDevices(lambda r: jobs_data[r], lambda t: w.by_thing[t].region)
        job_targets = w.plane.job_targets
        done_before = plane_demo.succeed_count(len(job_targets))
        try:
            for t in job_targets[:done_before]:
                job_devices.step(t)
            if done_before < len(job_targets):
                job_devices.step(job_targets[done_before], finish=False)
        except Exception as exc:  # noqa: BLE001 - the job demo says why
            job_devices.errors.append(f"before the kill: {plane_demo.reason(exc)}")

    def _kill(self, w: _World) -> None:
        """5. the outage. The sleepers fall asleep; the cloud queues commands for them in the outbox, long
        enough before the kill for the global table to carry them; then its last commands to every device
        there, through the outbox, just before the kill (the sleepers' one last, within the replication
        delay unless this machine is slower than it); then the kill."""
        from orchestrator.drill.world import global_tables

        opts, killed, survivor, commands, sleepers = self.opts, w.killed, w.survivor, w.commands, w.sleepers
        affected = [d for d in w.devices if w.before[d.thing] == killed]
        _wait(lambda: all(sl.region == killed for sl in sleepers), 10 + len(sleepers), None)
        for sleeper in sleepers:
            sleeper.stop()
        commands.send([sl.thing for sl in sleepers], COMMANDS_PER_DEVICE)
        time.sleep(2 * w.delay + 0.5)
        commands.send([d.thing for d in affected], COMMANDS_PER_DEVICE)
        commands.send([sl.thing for sl in sleepers], 1)  # the sleepers' last: the closest to the kill
        self.notify(f"drill: killing the {killed} broker (and its region's replication)")
        w.killed_at = killed_at = time.time()
        self._kill_broker(w, killed)
        global_tables.control(w.endpoint, region=killed, available=False)
        _wait(lambda: all(d.region == survivor for d in affected), opts.duration, None)
        w.all_back = max((d.log.connects[-1][0] for d in affected if d.region == survivor), default=None)
        # the sleepers wake and connect where DNS now answers: the survivor replays what its replica holds
        for sleeper in sleepers:
            sleeper.start()
        _wait(lambda: all(sl.region == survivor for sl in sleepers), 10 + opts.duration / 4, None)
        _wait(lambda: all(len(set(sl.log.executed) & set(commands.issued(sl.thing, killed_at)))
                          >= COMMANDS_PER_DEVICE for sl in sleepers), 10, None)
        _wait(lambda: all(o.idle() for o in w.outboxes.values()), 10, None)
        w.held_at_kill = int(global_tables.control(w.endpoint)["held"])
        time.sleep(max(2.0, 4 * opts.publish_interval))  # queued messages flush
        w.refused = _probe_unsynced(w.addresses[survivor], w.tls_port, w.domain, w.ca.cert_pem, w.unsynced)

    def _transitions(self, w: _World) -> None:
        """6. the transitions, through the orchestrator: failover, the device-management plane in the
        survivor, the killed region back, failback."""
        if self.opts.transitions:
            self._failover(w)
        w.demos = self._plane_demos(w)
        if self.opts.transitions:
            self._failback(w)

    def _failover(self, w: _World) -> None:
        from orchestrator.operations.lifecycle import Lifecycle

        steps, killed, survivor = w.steps, w.killed, w.survivor
        self.notify(f"drill: failover --to {survivor}")
        steps.append(self._step("failover", lambda: Lifecycle(w.dctx, sync_rate=1000).failover(survivor))
                     if killed == w.dctx.topology().primary else
                     StepRecord("failover", True, 0.0, f"{killed} was not the primary: no failover needed"))
        if w.refused and steps[-1].ok and steps[-1].seconds > 0:
            # failover's final sync carried the late certificate: the running broker trusts it
            # within its next registry refresh (IoT Core: at once), without a restart
            def trusted() -> bool:
                return _probe_unsynced(w.addresses[survivor], w.tls_port, w.domain, w.ca.cert_pem,
                                       w.unsynced) is False
            t0 = time.monotonic()
            ok = _wait(trusted, 10, None)
            steps.append(StepRecord("late certificate trusted after the final sync", ok, time.monotonic() - t0,
                                    f"{survivor}'s running broker {'accepts' if ok else 'still refuses'} the "
                                    f"certificate registered after the promotion's sync"))

    def _failback(self, w: _World) -> None:
        from orchestrator.drill.world import global_tables
        from orchestrator.drill.world.dns import query
        from orchestrator.operations.lifecycle import Lifecycle

        opts, steps, killed = self.opts, w.steps, w.killed
        self.notify(f"drill: {killed} comes back; failback")
        self._start_broker(w, killed)
        global_tables.control(w.endpoint, region=killed, available=True)
        # as the runbook says: fail back once the region's health check is healthy again
        # (TCP check and canary alarm: the alarm needs two good canary periods after the broker is back)
        _wait(lambda: w.answers.healthy_endpoint(w.endpoints[killed]), 10 + 60 * opts.time_scale * 5, None)
        if steps[-1].ok and steps[-1].seconds > 0:
            steps.append(self._step("failback", lambda: Lifecycle(w.dctx, sync_rate=1000).failback(killed)))
            answer = query(("127.0.0.1", w.dns.port), w.domain, w.sources[killed])[0]
            steps.append(StepRecord("new connections after failback", answer == w.addresses[killed], 0.0,
                                    f"{w.domain} answers {w.region_of_address.get(answer or '', answer)} "
                                    f"for a new connection (devices already connected stay where they are)"))

    def _plane_demos(self, w: _World) -> tuple[ProvisionDemo, CredentialsDemo, JobDemo]:
        """The device-management plane in the survivor (plane_demo.py): provisioning by claim,
        credentials through the role alias, the rollout's unfinished part."""
        import boto3

        from orchestrator.drill import plane_demo
        from orchestrator.drill.world.device_services import CredentialsProvider, FleetProvisioning
        from orchestrator.drill.world.iotdoor import client_context, connect_verdict

        opts, aws, survivor, killed, plane = self.opts, w.aws, w.survivor, w.killed, w.plane
        self.notify(f"drill: the device-management plane in {survivor}: provisioning by claim, role alias, "
                    f"the job")

        def connect(client_id: str, cert_pem: str, key_pem: str) -> str:
            pem, key = (cert_pem, key_pem) if cert_pem else (w.claim.cert_pem, w.claim.key_pem)
            with client_context(w.ca.cert_pem, pem, key) as tls:
                return connect_verdict(w.addresses[survivor], w.tls_port, w.domain, client_id, tls)

        provisioned = plane_demo.provision_by_claim(
            FleetProvisioning(w.iot[survivor], survivor, w.account), plane.claim_certificate_id, connect,
            lambda cond, timeout: _wait(cond, timeout, None))
        asker = next((d for d in w.devices if d.region == survivor), w.devices[0])

        def caller_identity(c: dict[str, Any]) -> str:
            session = boto3.session.Session(aws_access_key_id=c["accessKeyId"],
                                            aws_secret_access_key=c["secretAccessKey"],
                                            aws_session_token=c["sessionToken"])
            return str(client(aws, "sts", survivor, sess=session).get_caller_identity()["Arn"])

        credentials = plane_demo.role_alias_credentials(
            CredentialsProvider(w.iot[survivor], client(aws, "iam", survivor), client(aws, "sts", survivor),
                                survivor, w.account), w.cert_ids[asker.thing], asker.thing, caller_identity)
        if not plane.job_targets:
            job = JobDemo(DemoStatus.SKIPPED, f"{killed} was not the primary: no job to carry", JOB)
        elif not opts.transitions:
            job = JobDemo(DemoStatus.SKIPPED, "--no-transitions: in-flight jobs move with failover's "
                                              "carry-jobs step, which did not run", JOB,
                          targets=len(plane.job_targets))
        else:
            w.job_devices.drain(plane.job_targets)
            job = plane_demo.tally_job(w.job_devices.runs, plane.job_targets, killed, survivor, w.killed_at)
            if job.status is DemoStatus.FAILED and w.job_devices.errors:
                job = replace(job, why=f"{job.why}; {w.job_devices.errors[0]}")
        return provisioned, credentials, job

    def _stop_devices(self, w: _World) -> None:
        """Every publish the SDK still holds goes out and is acknowledged before the devices stop."""
        opts, fleet, devices = self.opts, w.fleet, w.devices
        time.sleep(2 * opts.publish_interval)
        fleet.stop_publishing()
        _wait(lambda: all(len(d.log.acked) >= len(d.log.published) for d in devices), 10 + opts.devices * 0.02, None)
        time.sleep(max(1.0, 2 * opts.publish_interval))
        fleet.stop()
        self._stop_sleepers(w)
        w.sampler_stop.set()
        w.sampler.join(5)

    def _measure(self, w: _World) -> DrillResult:
        """7. measurements."""
        from orchestrator.drill.world import global_tables
        from orchestrator.drill.world.outbox_world import count_commands

        opts, killed, survivor, killed_at, answers = self.opts, w.killed, w.survivor, w.killed_at, w.answers
        transitions = answers.transitions()
        killed_fqdn = w.endpoints[killed]
        detected = next((t.at for t in transitions if t.fqdn == killed_fqdn and not t.healthy and t.at >= killed_at),
                        None)
        changes = [c for c in answers.changes if c.at >= killed_at and c.before == killed_fqdn]
        dns_changed = min((c.at for c in changes), default=None)
        received: dict[str, dict[int, int]] = {d.thing: {} for d in w.devices}
        landed_in: dict[str, dict[int, set[str]]] = {d.thing: {} for d in w.devices}  # thing -> seq -> regions
        for s in w.services.values():
            for rec in s.received:
                if rec.thing in received:
                    received[rec.thing][rec.seq] = received[rec.thing].get(rec.seq, 0) + 1
                    landed_in[rec.thing].setdefault(rec.seq, set()).add(rec.region)
        ttl_s = answers.served_ttl or max(1, round(60 * opts.time_scale))
        outcomes = []
        for d in w.devices:
            outcomes.append(self._outcome(d, w.before[d.thing], survivor, killed, killed_at, detected, dns_changed,
                                          {c.client_region: c.at for c in changes}, w.sources, ttl_s, w.net,
                                          received[d.thing],
                                          w.data, landed_in[d.thing], w.commands.issued(d.thing, killed_at), w.delay))
        slept = []
        for sleeper in w.sleepers:
            n = count_commands(w.commands.issued(sleeper.thing, killed_at), sleeper.log.commands, killed_at,
                               survivor, w.delay)
            slept.append(SleeperCommands(sleeper.thing, next((r for t, r in sleeper.log.connects if t > killed_at),
                                                             None),
                                         n.issued, n.delivered_after, n.duplicates_dropped, n.lost,
                                         n.lost_within_replication))
        outbox_demo = OutboxDemo(replication_delay_s=w.delay, sleepers=tuple(slept),
                                 invocations={r: o.invocations for r, o in w.outboxes.items()},
                                 errors={r: o.errors[:5] for r, o in w.outboxes.items()},
                                 held_at_kill=w.held_at_kill,
                                 replicated=int(global_tables.control(w.endpoint)["replicated"]))
        demos = w.demos
        return DrillResult(
            options=opts, env=self.app.env, domain=w.domain, regions=w.regions, killed=killed, survivor=survivor,
            started=w.started, killed_at=killed_at, detected_at=detected, dns_changed_at=dns_changed,
            all_back_at=w.all_back, devices=tuple(outcomes), steps=tuple(w.steps), health=tuple(transitions),
            dns=tuple(answers.changes), samples=tuple(w.samples), refused_unregistered=w.refused, control=w.control,
            scaled={"time_scale": opts.time_scale, "health_check_interval_s": 30 * opts.time_scale,
                    "failure_threshold": 3, "ttl_s": ttl_s, "tls_port": w.tls_port,
                    "connect_quota_per_s": opts.connect_quota, "canary_period_s": w.canary.interval,
                    "route53_propagation_s": w.engine.propagation.delay_s,
                    "replication_delay_s": w.delay},
            admission={r: dict(vars(c)) for r, c in w.admission.counts.items()},
            retained_changed_after_sync=w.changed_after_sync,
            unattached=w.unattached_verdicts, refused_unattached=w.refused_unattached,
            provisioned_in_survivor=demos[0], role_alias_credentials=demos[1], job=demos[2], outbox=outbox_demo)

    def _step(self, operation: str, call: Callable[[], Any]) -> StepRecord:
        t0, at = time.monotonic(), time.time()
        try:
            report = call()
        except OperationFailed as exc:
            return StepRecord(operation, False, time.monotonic() - t0, exc.one_line(), at)
        detail = "; ".join(f"{s.step}: {s.status}" + (f" ({s.detail})" if s.status == "failed" and s.detail else "")
                           for s in report.steps)
        return StepRecord(operation, bool(report.ok), time.monotonic() - t0, detail, at)

    def _outcome(self, d: Any, before: str | None, survivor: str, killed: str, killed_at: float,
                 detected: float | None, dns_changed: float | None, changed_for: dict[str | None, float],
                 sources: dict[str, str], ttl_s: int,
                 net: Any, got: dict[int, int], data: dict[str, Any],
                 landed_in: dict[int, set[str]], issued: dict[str, float], delay: float) -> DeviceOutcome:
        from orchestrator.drill.landed import tally
        from orchestrator.drill.world.c2d import arrival_window, retained_on_arrival
        from orchestrator.drill.world.outbox_world import count_commands

        log = d.log
        moved = before == killed
        after = next((r for t, r in log.connects if t > killed_at), before)
        rto = detection = ttl = backoff = None
        attempts = sum(1 for t in log.attempts if t > killed_at)
        arrival = next((a for a in log.arrivals if a[0] > killed_at), None) if moved else None
        if moved:
            back = next((t for t, r in log.connects if t > killed_at and r == survivor), None)
            # Route 53 answers the survivor from the moment the killed region's check turns unhealthy
            change = detected if detected is not None else changed_for.get(d.location, dns_changed)
            if back is not None and change is not None:
                rto = back - killed_at
                detection = change - killed_at
                # the device's cached answer: the last lookup before the change that went to the resolver
                fetched = [r.at for r in net.resolutions if r.device == d.thing and not r.cached and r.at <= change]
                expiry = (fetched[-1] + ttl_s) if fetched else change
                fresh = min(max(change, expiry), back)
                ttl = fresh - change
                backoff = back - fresh
        acked_or_sent = set(log.published)
        missing = [s for s in acked_or_sent if s not in got]
        lost = len(missing)
        lost_acked = len([s for s in missing if s in log.acked])
        dup = sum(n - 1 for n in got.values() if n > 1)
        landing = tally(set(log.published), log.acked_in, landed_in)
        window = arrival_window(log.connects, log.disconnects, killed_at, survivor) if moved else None
        arrived = retained_on_arrival(log.config, window, killed_at)
        sent = count_commands(issued, log.commands, killed_at, survivor, delay)
        final_region = d.region or after or survivor
        try:
            doc = json.loads(data[final_region].get_thing_shadow(thingName=d.thing)["payload"].read())
            restored = (doc.get("state", {}).get("reported") or {}).get("seq") == log.last_report_accepted
        except Exception:  # noqa: BLE001 - no shadow there: not restored
            restored = False
        return DeviceOutcome(
            thing=d.thing, location=d.location, before=before, after=after, moved=moved, rto=rto,
            detection=detection, ttl=ttl, backoff=backoff, attempts=attempts, published=len(log.published),
            received=len(got), lost=lost, lost_after_ack=lost_acked, duplicated=dup,
            shadow_reported_found=arrival[2] if arrival else None,
            shadow_desired_found=arrival[3] if arrival else None, shadow_restored=restored,
            landed_where_acked=landing.landed_where_acked, landed_elsewhere=landing.landed_elsewhere,
            acked_never_landed=landing.acked_never_landed,
            retained_found=arrived.found if arrived else None, retained_current=arrived.current if arrived else None,
            commands_issued=sent.issued, commands_delivered_before=sent.delivered_before,
            commands_delivered_after=sent.delivered_after, commands_lost=sent.lost,
            commands_duplicates_dropped=sent.duplicates_dropped,
            commands_lost_within_replication=sent.lost_within_replication)


def _alarm_state(cloudwatch: Any, name: str) -> str | None:
    found = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return str(found[0]["StateValue"]) if found else None


def _canary_target(engine: Any, region: str, address: str, port: int, ca_pem: str, cloudwatch: Any) -> Any:
    """The drill's canary of `region`: its broker's TLS listener, as the canary thing the engine registered."""
    import os
    import ssl
    import tempfile

    from orchestrator.drill.world.cloudwatch import CanaryTarget
    from programs.contract import CanaryNames

    thing, keys = engine.canary_keys[region]
    names = CanaryNames.of(DRILL_ENV, region)
    tls = ssl.create_default_context(cadata=ca_pem)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        with open(cert, "w") as f:
            f.write(keys.cert_pem)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(keys.key_pem)
        tls.load_cert_chain(cert, key)
    return CanaryTarget(region, address, port, thing, names.topic_prefix, tls, cloudwatch, names.alarm)


def _fail(message: str) -> bool:
    raise OperationFailed(message)


def _wait(cond: Callable[[], bool], timeout: float, error: str | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    if error:
        raise OperationFailed(error)
    return False


def _probe_unsynced(address: str, port: int, domain: str, ca_pem: str, keypair: Any) -> bool | None:
    """Does the surviving region refuse a certificate registered after the last sync? (as IoT would)"""
    import os
    import socket
    import ssl
    import tempfile

    ctx = ssl.create_default_context(cadata=ca_pem)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the refusal shows in the handshake itself
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        with open(cert, "w") as f:
            f.write(keypair.cert_pem)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(keypair.key_pem)
        ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection((address, port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=domain) as tls:
            tls.settimeout(2)
            tls.recv(1)
    except ssl.SSLError:
        return True
    except TimeoutError:  # handshake done, the broker waits for CONNECT: accepted
        return False
    except ConnectionError:
        return True
    except OSError:
        return None
    return False


def _trap_sigterm(flag: list[int]) -> Any:
    """SIGTERM ends the drill like Ctrl-C: through the clean-up path."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        flag.append(signum)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
