"""A two-region environment through the real engine: `up --all` (regions, DNS, replication),
`preview --all --format markdown` of a topology change, `destroy --all` with and without the
protected data.

The tests of this module share one environment and run in file order (up, preview, destroy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.engine.helpers import OrchestrateProject, dev_topology, gate_children, reset_moto

PRIMARY, SECONDARY, NEW = "eu-west-1", "eu-central-1", "eu-north-1"
REGION_STACKS = [f"dev-region-{PRIMARY}", f"dev-region-{SECONDARY}"]
ALL_STACKS = [*REGION_STACKS, "dev-dns", "dev-replication"]


def _topology(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"secondaries": [SECONDARY], "routing": "failover",
                            "residency": [PRIMARY, SECONDARY, NEW]}
    return dev_topology(**{**base, **changes})


@dataclass
class Env2:
    project: OrchestrateProject
    endpoint: str
    up_report: dict[str, Any]

    def run(self, *args: str) -> Any:
        """`orchestrate --json <args> --endpoint-url <moto>`: the JSON document."""
        return self.project.json(*args, "--endpoint-url", self.endpoint, env=self.mirror)

    @property
    def mirror(self) -> dict[str, str]:
        """The stand-in provider mirrors what it creates (buckets, queues, tables) into moto."""
        return {"FAKE_AWS_MOTO_URL": self.endpoint}


@pytest.fixture(scope="module")
def env2(pulumi_tools, moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Env2:
    """Two regions (failover) after `up --all`, on a moto server of its own (reset: nothing an
    earlier module left behind), into which the stand-in mirrors what it creates. The replication
    stack's registry sync command talks to it too (`--endpoint-url`)."""
    reset_moto(moto_server)
    import boto3

    boto3.client("route53", region_name="us-east-1", endpoint_url=moto_server, aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_hosted_zone(Name="example.com", CallerReference="two-regions")
    project = OrchestrateProject(pulumi_tools, tmp_path_factory.mktemp("two-regions"), _topology())
    return Env2(project, moto_server, project.json("up", "--yes", "--all", "--endpoint-url", moto_server,
                                                   env={"FAKE_AWS_MOTO_URL": moto_server}))


def _name(resource: dict[str, Any]) -> str:
    return resource["urn"].rsplit("::", 1)[-1]


def test_up_all_brings_the_replication_stack_up(env2: Env2) -> None:
    report, project = env2.up_report, env2.project
    assert report["ok"] is True, report
    assert [sorted(w) for w in report["waves"]] == [sorted(REGION_STACKS), ["dev-dns"], ["dev-replication"]]
    assert {n: s["outcome"] for n, s in report["stacks"].items()} == dict.fromkeys(ALL_STACKS, "succeeded")
    # the committed stack config holds no --endpoint-url overrides (they live in the workspace's
    # scratch copy, which git ignores), yet the stacks reached the endpoint
    committed = project.config_files()
    assert sorted(committed) == sorted(f"Pulumi.{s}.yaml" for s in ALL_STACKS)
    for name, text in committed.items():
        assert b"127.0.0.1" not in text and b"aws:endpoints" not in text and b"skipCredentials" not in text, name
    for stack in ALL_STACKS:
        scratch = project.root / ".orchestrate" / "workspaces" / stack / "endpoint-config.yaml"
        assert env2.endpoint.encode() in scratch.read_bytes()

    primary = project.json("outputs", REGION_STACKS[0])["outputs"]
    secondary = project.json("outputs", REGION_STACKS[1])["outputs"]
    replication = project.export("dev-replication")["deployment"]["resources"]

    # the versioning of both lakes was *read* (owned by the region stacks), and read as Enabled:
    # what the region stacks set in the fake account
    reads = [r for r in replication if r["type"] == "aws:s3/bucketVersioning:BucketVersioning"]
    assert sorted(r["id"] for r in reads) == sorted([primary["dataLakeBucketName"], secondary["dataLakeBucketName"]])
    assert all(r.get("external") for r in reads), "versioning must be read, never owned, by replication"
    assert {r["outputs"]["versioningConfiguration"]["status"] for r in reads} == {"Enabled"}

    # S3 replication: the primary lake to the secondary's
    [config] = [r for r in replication if r["type"] == "aws:s3/bucketReplicationConfig:BucketReplicationConfig"]
    assert config["outputs"]["bucket"] == primary["dataLakeBucketName"]
    assert [rule["destination"]["bucket"] for rule in config["outputs"]["rules"]] == [secondary["dataLakeBucketArn"]]
    # the registry sync ran for real (the command provider ran `orchestrate registry sync`)
    syncs = [r for r in replication if r["type"] == "command:local:Command"]
    assert syncs and all(f"--to {SECONDARY}" in r["outputs"]["create"] for r in syncs)

    # continuous replication: the function in the secondary, on its replica's stream, with a
    # dead-letter queue
    [fn] = [r for r in replication if r["type"] == "aws:lambda/function:Function"
            and "readiness" not in r["urn"]]  # the scheduled readiness function: test_readiness_schedule.py
    assert fn["outputs"]["name"] == f"iot-dev-replicator-{SECONDARY}" and fn["outputs"]["region"] == SECONDARY
    [mapping] = [r for r in replication if r["type"] == "aws:lambda/eventSourceMapping:EventSourceMapping"]
    assert f":dynamodb:{SECONDARY}:" in mapping["outputs"]["eventSourceArn"]
    assert mapping["outputs"]["functionResponseTypes"] == ["ReportBatchItemFailures"]
    rules = sorted(r["outputs"]["region"] for r in replication if r["type"] == "aws:iot/topicRule:TopicRule")
    assert rules == sorted([PRIMARY] * 3 + [SECONDARY] * 3)  # failover: both routed regions
    # the daily reconciliation in the secondary, created in moto by the stand-in (its definition
    # validated as Step Functions validates it): a state machine over the function, started daily
    # by EventBridge Scheduler
    machine, schedule = _reconciliation(env2.endpoint)
    assert machine is not None and schedule is not None
    definition = json.loads(machine["definition"])
    assert definition["States"]["Slice"]["Parameters"]["FunctionName"] == fn["outputs"]["arn"]
    assert definition["States"]["Slice"]["Parameters"]["Payload"] == {"reconcile": {"from": PRIMARY, "slice": {}}}
    assert machine["type"] == "STANDARD"
    assert schedule["Target"]["Arn"] == machine["stateMachineArn"] and schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["ScheduleExpression"] == "rate(1 day)"
    # status reports the secondary's replication (its dead-letter queue, mirrored into moto) and
    # finds the vault empty, not unreachable
    status = env2.run("status")
    (health,) = status["replication"]
    assert health["region"] == SECONDARY and health["error"] is None, health
    assert status["backup"]["state"] == "none found", status["backup"]

    # DNS: failover, records named by role (the primary's first), both health-checked
    dns = project.resources("dev-dns")
    records = {r["outputs"]["setIdentifier"]: r["outputs"] for r in dns if r["type"] == "aws:route53/record:Record"}
    assert set(records) == {"primary", "secondary"}
    assert records["primary"]["failoverRoutingPolicies"] == [{"type": "PRIMARY"}]
    assert records["secondary"]["failoverRoutingPolicies"] == [{"type": "SECONDARY"}]
    assert records["primary"]["records"] == [primary["iotEndpoint"]]
    assert records["secondary"]["records"] == [secondary["iotEndpoint"]]
    checks = {r["id"]: r["outputs"] for r in dns if r["type"] == "aws:route53/healthCheck:HealthCheck"}
    assert len(checks) == 6  # per region: TCP, canary alarm, the CALCULATED gate the record uses
    for role, region, out in (("primary", PRIMARY, primary), ("secondary", SECONDARY, secondary)):
        assert gate_children(checks, records[role]["healthCheckId"]) == (
            out["iotEndpoint"], f"iot-dev-canary-{region}-mqtt")


def test_preview_markdown_of_a_topology_change_names_changes_and_placeholders(env2: Env2) -> None:
    project = env2.project
    before_files = project.config_files()
    before_stacks = _backend_stacks(project)
    changed = _topology(secondaries=[SECONDARY, NEW])
    changed["registry"]["thing_types"] = [*changed["registry"]["thing_types"], "door-lock"]
    original = project.read_topology()
    project.write_topology(changed)
    try:
        proc = project.run("preview", "--all", "--format", "markdown", "--endpoint-url", env2.endpoint)
    finally:
        project.write_topology(original)
    markdown = proc.stdout

    # the changed resources, by name, in every region (the new one included)
    for region in (PRIMARY, SECONDARY, NEW):
        assert f"`iot-dev-{region}-type-door-lock`" in markdown, markdown
    assert f"dev-region-{NEW}" in markdown
    # the new secondary is not deployed: replication is previewed with marked placeholders
    replication = markdown[markdown.index("<summary><code>dev-replication</code>"):]
    assert "preview failed" not in replication, replication
    assert f"bucketArn of `dev-region-{NEW}` not deployed yet: placeholder used for `secondaries`" in replication
    assert "`dev-replication` ⏳ placeholders" in markdown  # flagged in the summary table too
    # nothing left behind: config files byte for byte, no stack created for the preview
    assert project.config_files() == before_files
    assert not (project.stacks / f"Pulumi.dev-region-{NEW}.yaml").exists()
    assert _backend_stacks(project) == before_stacks


def test_destroying_the_secondary_without_yes_touches_nothing(env2: Env2) -> None:
    """Before: a secondary went to `remove_secondary` before any confirmation and was destroyed,
    protected data included, with input from /dev/null and exit 0."""
    project = env2.project
    before = {stack: project.resources(stack) for stack in ALL_STACKS}
    topology = project.topology_path.read_text()
    proc = project.run("destroy", "--region", SECONDARY, "--include-protected", "--endpoint-url", env2.endpoint,
                       expect=4)
    assert "--yes" in proc.stderr and len(proc.stderr.strip().splitlines()) >= 1
    assert {stack: project.resources(stack) for stack in ALL_STACKS} == before
    assert project.topology_path.read_text() == topology


def test_a_topology_of_another_env_is_refused_before_anything_runs(env2: Env2) -> None:
    """Before: ORCHESTRATE_ENV=prod with dev's topology destroyed a stack named after prod, guarded by
    dev's topology, exit 0."""
    project = env2.project
    before = {stack: project.resources(stack) for stack in ALL_STACKS}
    proc = project.run("destroy", "--region", SECONDARY, "--yes", expect=2,
                       env={"ORCHESTRATE_ENV": "prod", "ORCHESTRATE_CONFIG": str(project.topology_path)})
    assert "topology of env 'dev', not of env 'prod'" in proc.stderr
    assert {stack: project.resources(stack) for stack in ALL_STACKS} == before


def test_destroy_all_keeps_protected_data_unless_asked(env2: Env2) -> None:
    project = env2.project
    report = env2.run("destroy", "--all", "--yes")
    assert report["ok"] is True, report
    assert [sorted(w) for w in report["waves"]] == [["dev-replication"], ["dev-dns"], sorted(REGION_STACKS)]

    # a stack left empty is removed with its config file (dev-dns); stacks keeping protected data stay
    kept = [s for s in ALL_STACKS if s != "dev-dns"]
    assert _backend_stacks(project) == sorted(kept)
    assert sorted(project.config_files()) == sorted(f"Pulumi.{s}.yaml" for s in kept)
    left = {stack: [r for r in project.resources(stack) if r["type"].startswith("aws:")] for stack in kept}
    assert all(r.get("protect") for rs in left.values() for r in rs), left
    kinds = {stack: sorted(r["type"].split(":")[-1] for r in rs) for stack, rs in left.items()}
    assert kinds == {
        f"dev-region-{PRIMARY}": ["Bucket", "Bucket", "Key", "Stream"],  # lake, vault, its signing key, stream
        f"dev-region-{SECONDARY}": ["Bucket", "Stream"],
        "dev-replication": ["Table"],  # the registry-events table
    }
    claims = sorted(p.name for p in project.account.iterdir() if p.name.startswith("s3-bucket"))
    assert len(claims) == 3  # the buckets still exist in the account
    assert _reconciliation(env2.endpoint) == (None, None)  # the state machine and its schedule are gone

    report = env2.run("destroy", "--all", "--include-protected", "--yes")
    assert report["ok"] is True, report
    # every stack destroyed to nothing: removed from the backend, config files gone with them
    assert _backend_stacks(project) == [] and project.config_files() == {}
    assert not [p for p in project.account.iterdir() if p.name.startswith("s3-bucket")]
    status = {s["name"]: s for s in env2.run("status")["stacks"]}
    assert not any(s["deployed"] for s in status.values())


def _reconciliation(endpoint: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The secondary's reconciliation state machine and schedule as moto has them (None: absent)."""
    import boto3

    keys = {"region_name": SECONDARY, "endpoint_url": endpoint, "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing"}
    name = f"iot-dev-reconcile-{SECONDARY}"
    sfn, scheduler = boto3.client("stepfunctions", **keys), boto3.client("scheduler", **keys)
    arns = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"] if m["name"] == name]
    machine = sfn.describe_state_machine(stateMachineArn=arns[0]) if arns else None
    try:
        schedule: dict[str, Any] | None = scheduler.get_schedule(Name=name)
    except scheduler.exceptions.ResourceNotFoundException:
        schedule = None
    return machine, schedule


def _backend_stacks(project: OrchestrateProject) -> list[str]:
    listing = json.loads(project.pulumi("stack", "ls", "--json").stdout)
    return sorted(s["name"] for s in listing)
