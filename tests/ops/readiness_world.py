"""A two-region environment that is READY, built on the moto server through the real APIs, and the
misconfigurations `orchestrate readiness` must find (tests/ops/test_ops_readiness.py, bench/readiness.py).

What moto does not offer is answered by `Overlay`, a per-client botocore `before-call` handler that
holds the state of two APIs and answers them after botocore validated the request against the
service model, in the shapes AWS documents:

- IoT DescribeEventConfigurations / UpdateEventConfigurations (AWS default: every event off);
- Service Quotas ListServiceQuotas for `iotcore` (applied values per region, each quota naming its
  usage metric; unknown service codes answer NoSuchResourceException as AWS does).

Everything else (registry, ACM, domain configurations, topic rules, Kinesis, S3, DynamoDB, SQS,
Lambda, Route 53, CloudWatch, KMS-signed backups) is moto's.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from orchestrator.aws import AwsContext, client, session
from orchestrator.readiness.probe import Probe, Settings
from tests.ops.conftest import DST, SRC, THIRD

ENV = "dev"
DOMAIN = "iot.example.com"
USAGE_NS = "AWS/Usage"


def topology(**extra: Any) -> Any:
    from orchestrator.topology import parse

    doc = {"env": ENV, "domain": DOMAIN, "hosted_zone": "example.com", "primary": SRC, "secondaries": [DST],
           "routing": "failover", "residency": [SRC, DST, THIRD], "backup_region": THIRD, **extra}
    return parse(doc, env=ENV)


def server_cert(domain: str, days: int, *, expired: bool = False) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=days + 10) if expired else now - timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))


QUOTA_NAMES = {
    "L-CONNECT": "Connect requests per second per account",
    "L-CONCURRENT": "Maximum concurrent client connections per account",
    "L-CREATETHING": "CreateThing requests per second",
    "L-SHADOW": "Device Shadow requests per second per account",
}


def _body(request: dict[str, Any]) -> dict[str, Any]:
    """The API parameters of a JSON-protocol request (botocore serialized and validated them)."""
    body = request.get("body") or b"{}"
    return dict(json.loads(body.decode() if isinstance(body, bytes) else body))


@dataclass
class Overlay:
    """The state of the APIs moto lacks, per region; installed on each probe client."""

    events: dict[str, dict[str, bool]] = field(default_factory=dict)  # region -> event type -> on
    quotas: dict[str, dict[str, float]] = field(default_factory=dict)  # region -> quota code -> value
    answered: list[str] = field(default_factory=list)

    def install(self, made: Any, service: str, region: str) -> None:
        if service == "iot":
            made.meta.events.register("before-call.iot.DescribeEventConfigurations",
                                      lambda **kw: self._describe_events(region))
            made.meta.events.register("before-call.iot.UpdateEventConfigurations",
                                      lambda params, **kw: self._update_events(region, _body(params)))
        if service == "service-quotas":
            made.meta.events.register("before-call.service-quotas.ListServiceQuotas",
                                      lambda params, **kw: self._quotas(region, _body(params)))

    def _ok(self, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse

        return AWSResponse("https://overlay", 200, {}, None), {**body, "ResponseMetadata": {"HTTPStatusCode": 200}}

    def _describe_events(self, region: str) -> Any:
        self.answered.append(f"{region} DescribeEventConfigurations")
        conf = self.events.get(region, {})
        from programs.region import REGISTRY_EVENTS

        kinds = (*REGISTRY_EVENTS, "JOB", "JOB_EXECUTION", "POLICY", "CERTIFICATE", "CA_CERTIFICATE")
        return self._ok({"eventConfigurations": {k: {"Enabled": bool(conf.get(k, False))} for k in kinds},
                         "creationDate": datetime(2026, 1, 1, tzinfo=timezone.utc),
                         "lastModifiedDate": datetime(2026, 1, 1, tzinfo=timezone.utc)})

    def _update_events(self, region: str, params: dict[str, Any]) -> Any:
        conf = self.events.setdefault(region, {})
        for k, v in (params.get("eventConfigurations") or {}).items():
            conf[k] = bool(v.get("Enabled"))
        return self._ok({})

    def _quotas(self, region: str, params: dict[str, Any]) -> Any:
        from botocore.awsrequest import AWSResponse

        self.answered.append(f"{region} ListServiceQuotas")
        if params.get("ServiceCode") != "iotcore" or region not in self.quotas:
            return AWSResponse("https://overlay", 400, {}, None), {
                "Error": {"Code": "NoSuchResourceException", "Message": "no such service"},
                "ResponseMetadata": {"HTTPStatusCode": 400}}
        rows = [{"ServiceCode": "iotcore", "ServiceName": "AWS IoT Core", "QuotaCode": code,
                 "QuotaName": QUOTA_NAMES[code], "Value": value, "Unit": "None", "Adjustable": True,
                 "GlobalQuota": False,
                 "UsageMetric": {"MetricNamespace": USAGE_NS, "MetricName": "CallCount",
                                 "MetricDimensions": {"Service": "IoT", "Type": "API", "Resource": code,
                                                      "Class": "None"},
                                 "MetricStatisticRecommendation": "Maximum"}}
                for code, value in sorted(self.quotas[region].items())]
        return self._ok({"Quotas": rows})


@dataclass
class ReadyWorld:
    ctx: AwsContext
    topology: Any
    overlay: Overlay
    outputs: dict[str, dict[str, Any]]
    backup_dest: str
    signing_key: str
    signer: Any
    things: list[str]
    mk: Callable[[str, str], Any]

    def probe(self, **settings: Any) -> Probe:
        return Probe(env=ENV, topology=self.topology, ctx=self.ctx, outputs=lambda n: self.outputs.get(n),
                     settings=Settings(seed=7, **settings), backend_url="s3://state-bucket?region=" + THIRD,
                     secrets_provider="passphrase", backup_dest=self.backup_dest, signing_key=self.signing_key,
                     client_hook=self.overlay.install)

    def c(self, service: str, region: str) -> Any:
        """A client of the world's one session (made once per service and region)."""
        return self.mk(service, region)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


def topic_rule(iot: Any, name: str, *, disabled: bool = False) -> None:
    iot.create_topic_rule(ruleName=name, topicRulePayload={
        "sql": "SELECT * FROM 'things/+/telemetry'", "awsIotSqlVersion": "2016-03-23", "ruleDisabled": disabled,
        "actions": [{"kinesis": {"roleArn": "arn:aws:iam::123456789012:role/rule", "streamName": "s",
                                 "partitionKey": "${topic(2)}"}}]})


def build(ctx: AwsContext, *, n_things: int = 6, seed_workers: int = 1,
          registry: Callable[[Any, Any], list[str]] | None = None) -> ReadyWorld:
    """Everything the rules read, READY in both regions (and a signed backup vault in THIRD)."""
    from orchestrator.registry import SyncOptions, read_snapshot, sync_clients
    from orchestrator.registry.backup import backup
    from orchestrator.registry.signing import signer_from_spec
    from programs.contract import ReplicationNames
    from programs.region import REGISTRY_EVENTS
    from programs.replication import RULE_DESCRIPTIONS, rule_name
    from tests.ops.registry_world import seed

    top = topology()
    sess = session(ctx)
    made: dict[tuple[str, str], Any] = {}

    def mk(service: str, region: str) -> Any:
        if (service, region) not in made:
            made[(service, region)] = client(ctx, service, region, sess=sess, max_pool_connections=16)
        return made[(service, region)]

    if registry is None:
        world = seed(mk("iot", SRC), n_things, group_policy=False, workers=seed_workers)
        report = sync_clients(mk("iot", SRC), mk("iot", DST), SyncOptions(rate=10_000.0),
                              src_data=mk("iot-data", SRC), dst_data=mk("iot-data", DST))
        assert report.ok, report
        things = world.things
    else:
        things = registry(mk("iot", SRC), mk("iot", DST))
    overlay = Overlay()
    outputs: dict[str, dict[str, Any]] = {}
    iam = mk("iam", SRC)
    role = iam.create_role(RoleName="replicator", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    for region in (SRC, DST):
        pem, key = server_cert(DOMAIN, 365)
        cert_arn = mk("acm", region).import_certificate(Certificate=pem, PrivateKey=key)["CertificateArn"]
        iot = mk("iot", region)
        name = f"iot-{ENV}-{region}-domain"
        iot.create_domain_configuration(domainConfigurationName=name, domainName=DOMAIN,
                                        serverCertificateArns=[cert_arn], serviceType="DATA")
        topic_rule(iot, f"iot_{ENV}_{region}_telemetry".replace("-", "_"))
        for kind in RULE_DESCRIPTIONS:
            topic_rule(iot, rule_name(ENV, kind, region))
        kin = mk("kinesis", region)
        stream = f"iot-{ENV}-{region}-telemetry"
        kin.create_stream(StreamName=stream, ShardCount=2)
        kin.start_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis")
        s3 = mk("s3", region)
        bucket = f"iot-{ENV}-lake-{region}"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        mk("dynamodb", region).create_table(
            TableName=f"iot-{ENV}-registry-events", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "eventId", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "eventId", "KeyType": "HASH"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        overlay.events[region] = dict.fromkeys(REGISTRY_EVENTS, True)
        overlay.quotas[region] = {"L-CONNECT": 500.0, "L-CONCURRENT": 100_000.0, "L-CREATETHING": 15.0,
                                  "L-SHADOW": 500.0}
        outputs[f"{ENV}-region-{region}"] = {
            "region": region, "domainConfigurationName": name, "certificateArn": cert_arn, "streamName": stream,
            "dataLakeBucketName": bucket, "dataLakeBucketArn": f"arn:aws:s3:::{bucket}"}
    # the primary's lake replicates into the secondary's
    mk("s3", SRC).put_bucket_replication(Bucket=f"iot-{ENV}-lake-{SRC}", ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/s3-replication",
        "Rules": [{"ID": DST, "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::iot-{ENV}-lake-{DST}"}}]})
    # the replication function of the secondary: function, dead-letter queue, applied table
    names = ReplicationNames.of(ENV, DST)
    mk("lambda", DST).create_function(FunctionName=names.function, Runtime="python3.12", Role=role,
                                      Handler="handler.handler", Code={"ZipFile": _zip()})
    mk("sqs", DST).create_queue(QueueName=names.dead_letter_queue)
    ddb = mk("dynamodb", DST)
    ddb.create_table(TableName=names.applied_table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "objectKey", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "objectKey", "KeyType": "HASH"}])
    reconcile(mk, hours_ago=2)
    # the primary's peak use: a tenth of each quota
    now = datetime.now(timezone.utc)
    mk("cloudwatch", SRC).put_metric_data(Namespace=USAGE_NS, MetricData=[
        {"MetricName": "CallCount", "Timestamp": now - timedelta(hours=3), "Value": value / 10,
         "Dimensions": [{"Name": "Class", "Value": "None"}, {"Name": "Resource", "Value": code},
                        {"Name": "Service", "Value": "IoT"}, {"Name": "Type", "Value": "API"}]}
        for code, value in overlay.quotas[SRC].items()])
    # Route 53 health checks, exported by the DNS stack
    r53 = mk("route53", "us-east-1")
    checks = {}
    for region in (SRC, DST):
        checks[region] = r53.create_health_check(CallerReference=f"hc-{region}", HealthCheckConfig={
            "Type": "HTTPS", "FullyQualifiedDomainName": f"{region}.example.net", "Port": 443,
            "ResourcePath": "/health", "RequestInterval": 30, "FailureThreshold": 3})["HealthCheck"]["Id"]
    outputs[f"{ENV}-dns"] = {"healthCheckIds": checks}
    # a signed backup of the primary's registry in the vault (THIRD)
    vault = f"iot-{ENV}-vault"
    mk("s3", THIRD).create_bucket(Bucket=vault, CreateBucketConfiguration={"LocationConstraint": THIRD})
    kms = mk("kms", SRC)
    key_arn = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["Arn"]
    spec = f"awskms:{key_arn}"
    signer = signer_from_spec(spec, kms=kms)
    dest = f"s3://{vault}/registry"
    backup(read_snapshot(mk("iot", SRC)), {}, dest, env=ENV, now=now - timedelta(hours=1),
           s3_client=mk("s3", THIRD), signer=signer)
    return ReadyWorld(ctx, top, overlay, outputs, dest, spec, signer, things, mk)


def reconcile(mk: Callable[[str, str], Any], *, hours_ago: float, ok: bool = True) -> None:
    from orchestrator.registry.replicate import DynamoAppliedStore
    from programs.contract import ReplicationNames

    at = (datetime.now(timezone.utc) - timedelta(hours=hours_ago)).isoformat(timespec="seconds")
    DynamoAppliedStore(mk("dynamodb", DST), ReplicationNames.of(ENV, DST).applied_table).put_reconciliation(
        {"at": at, "from": SRC, "ok": ok, "applied": 3, "errors": 0 if ok else 2})
