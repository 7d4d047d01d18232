"""One region of the platform (`E-region-<region>`): custom domain, registry, ingestion, data lake.

The same code serves every region: the region is `RegionArgs.region`, passed as `region=` to every
regional resource (pulumi-aws 7), and never written anywhere else. IAM and Route 53 are global
and take no region. Policy documents use `*` for region and account (see `policies`).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi import Output, ResourceOptions

from programs import canary, policies
from programs.contract import BACKUP_OUTPUT, REGION_OUTPUTS, REGISTRY_EVENTS, SIGNING_KEY_OUTPUT, RegionArgs

TYPE = "iotplatform:region:IotRegion"
TLS_POLICY = "IoTSecurityPolicy_TLS13_1_2_2022_10"
TELEMETRY_SQL = f"SELECT * FROM '{policies.TELEMETRY_TOPIC_FILTER}'"
SQL_VERSION = "2016-03-23"
# Firehose key layout of the lake: Hive-style partitions, queryable by Athena/Glue without a crawler.
TELEMETRY_PREFIX = ("telemetry/year=!{timestamp:yyyy}/month=!{timestamp:MM}/"
                    "day=!{timestamp:dd}/hour=!{timestamp:HH}/")
FIREHOSE_ERROR_PREFIX = ("errors/firehose/!{firehose:error-output-type}/year=!{timestamp:yyyy}/"
                         "month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/")
RULE_ERROR_PREFIX = "errors/iot-rule"
NONCURRENT_VERSION_DAYS = 30  # old versions (overwrites, deletes) stay recoverable for a month
ABORT_MULTIPART_DAYS = 7
BACKUP_RETENTION_DAYS = 35  # daily registry + state backups are kept five weeks
# Object Lock on the vault (docs/runbooks/restore.md): GOVERNANCE, every version locked as long as
# it is kept, so nobody without s3:BypassGovernanceRetention can delete or overwrite a backup to
# make an older one the newest. Not longer than the retention: lifecycle cannot remove a locked
# version, so a longer lock would keep versions past their expiry.
BACKUP_LOCK_MODE = "GOVERNANCE"
BACKUP_LOCK_DAYS = BACKUP_RETENTION_DAYS
# Registry events the replication stack's rule consumes ($aws/events/thing…). Only these keys are
# sent, so settings other teams own (jobs, certificates, policies) are left as they are.
_BUCKET_PREFIX_MAX = 37  # S3 allows 63; the provider appends a 26-character unique suffix


def lake_bucket_prefix(env: str, region: str) -> str:
    """`iot-<env>-lake-<region>-`, shortening the env part (never the region) to fit S3's limit."""
    room = _BUCKET_PREFIX_MAX - len(f"iot--lake-{region}-")
    return f"iot-{env[:max(room, 1)].rstrip('-')}-lake-{region}-"


def device_policy_name(env: str) -> str:
    """Region-neutral: the same name in every region, so registry sync copies it one to one."""
    return f"iot-{env}-device"


class IotRegion(pulumi.ComponentResource):
    region: Output[str]
    iot_endpoint: Output[str]
    domain_configuration_name: Output[str]
    domain_configuration_arn: Output[str]
    certificate_arn: Output[str]
    stream_name: Output[str]
    stream_arn: Output[str]
    data_lake_bucket_name: Output[str]
    data_lake_bucket_arn: Output[str]
    device_policy_name: Output[str]

    def __init__(self, name: str, args: RegionArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        region = args.region
        child = ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        tags = {"Environment": args.env, "ManagedBy": "orchestrate", "Component": "region"}
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition

        # -- custom domain: ACM certificate in this region, validated over DNS --------------------
        cert = aws.acm.Certificate(
            f"{name}-cert", domain_name=args.domain, validation_method="DNS",
            key_algorithm="RSA_2048", region=region, tags=tags, opts=child)
        option = cert.domain_validation_options.apply(
            lambda opts: next(o for o in opts if o.domain_name == args.domain))
        if args.manage_validation_record:
            # The validation CNAME is identical in every region of the account: only the owner
            # stack creates it; the other regions wait on the same FQDN below.
            # The zone may live in the DNS account (topology `accounts.dns`): look it up and write
            # the record there, through a provider assuming its role.
            dns_provider = _dns_provider(name, args, self)
            zone = aws.route53.get_zone_output(name=args.hosted_zone, private_zone=False,
                                               opts=pulumi.InvokeOptions(parent=self, provider=dns_provider))
            record = aws.route53.Record(
                f"{name}-cert-validation-record", zone_id=zone.zone_id,
                name=option.resource_record_name, type=option.resource_record_type,
                records=[option.resource_record_value], ttl=300,
                opts=ResourceOptions(parent=self, provider=dns_provider))
            fqdns: list[Output[str]] = [record.fqdn]
        else:
            fqdns = [option.resource_record_name.apply(lambda n: n.rstrip("."))]
        validation = aws.acm.CertificateValidation(
            f"{name}-cert-validation", certificate_arn=cert.arn, validation_record_fqdns=fqdns,
            region=region, opts=child)

        # AWS cannot change a domain configuration's certificate in place (delete and recreate,
        # one configuration per FQDN): the ARN must never change. It is the ACM certificate of the
        # domain with constant inputs, and ACM's managed renewal keeps the ARN (docs/architecture.md,
        # "A certificate change never takes the custom domain down").
        domain = aws.iot.DomainConfiguration(
            f"{name}-domain", name=f"iot-{args.env}-{region}-domain", domain_name=args.domain,
            service_type="DATA", server_certificate_arns=[validation.certificate_arn],
            tls_config={"security_policy": TLS_POLICY}, region=region, tags=tags, opts=child)
        endpoint = aws.iot.get_endpoint_output(endpoint_type="iot:Data-ATS", region=region, opts=invoke)

        # -- registry --------------------------------------------------------------------------
        for thing_type in args.thing_types:
            aws.iot.ThingType(f"{name}-type-{thing_type}", name=thing_type, region=region, opts=child)
        groups: dict[str, aws.iot.ThingGroup] = {}
        for group in args.thing_groups:
            parent = groups[group.parent].name if group.parent else None
            groups[group.name] = aws.iot.ThingGroup(
                f"{name}-group-{group.name}", name=group.name, parent_group_name=parent,
                region=region, tags=tags, opts=child)
        aws.iot.EventConfigurations(
            f"{name}-registry-events", event_configurations={key: True for key in REGISTRY_EVENTS},
            region=region, opts=child)
        aws.iot.IndexingConfiguration(
            f"{name}-indexing",
            thing_indexing_configuration={"thing_indexing_mode": "REGISTRY"},
            thing_group_indexing_configuration={"thing_group_indexing_mode": "ON"},
            region=region, opts=child)
        device_policy = aws.iot.Policy(
            f"{name}-device-policy", name=device_policy_name(args.env),
            policy=partition.apply(lambda p: policies.dumps(policies.device_policy(p))),
            region=region, tags=tags, opts=child)

        # -- data lake -------------------------------------------------------------------------
        # SSE-S3 rather than SSE-KMS: replication to other regions then needs no per-region KMS
        # grants and the replication role names only the two buckets. Moving to a customer key
        # means sse_kms_encrypted_objects + replica_kms_key_id in the replication stack.
        bucket, versioning, encryption = _hardened_bucket(
            self, f"{name}-lake", lake_bucket_prefix(args.env, region), region, tags)
        sizing = args.sizing
        lake_rule: aws.s3.BucketLifecycleConfigurationRuleArgsDict = {
            "id": "lake-lifecycle",
            "status": "Enabled",
            "filter": {"prefix": ""},  # every object
            "transitions": [{"days": sizing.lake_transition_days, "storage_class": "STANDARD_IA"}],
            "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
            "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
        }
        if sizing.lake_expiration_days > 0:
            lake_rule["expiration"] = {"days": sizing.lake_expiration_days}
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lake-lifecycle", bucket=bucket.id, rules=[lake_rule], region=region,
            opts=ResourceOptions(parent=self, depends_on=[versioning]))

        # -- ingestion: IoT rule -> Kinesis -> Firehose -> lake ------------------------------------
        provisioned = sizing.kinesis_mode == "PROVISIONED"
        stream = aws.kinesis.Stream(
            f"{name}-telemetry", name=f"iot-{args.env}-{region}-telemetry",
            encryption_type="KMS", kms_key_id="alias/aws/kinesis",
            retention_period=sizing.retention_hours,
            stream_mode_details={"stream_mode": sizing.kinesis_mode},
            shard_count=sizing.kinesis_shards if provisioned else None,
            region=region, tags=tags, opts=ResourceOptions(parent=self, protect=True))

        iot_trust = account_id.apply(lambda a: policies.dumps(policies.service_trust("iot.amazonaws.com", a)))
        rule_role = aws.iam.Role(f"{name}-rule-role",
                                 path=args.iam.path, permissions_boundary=args.iam.boundary,
                                 assume_role_policy=iot_trust, tags=tags, opts=child)
        rule_policy = aws.iam.RolePolicy(
            f"{name}-rule-policy", role=rule_role.id,
            policy=stream.arn.apply(lambda arn: policies.dumps(policies.kinesis_put(arn))), opts=child)
        # The error action has its own role, so the rule role stays scoped to the stream alone.
        error_role = aws.iam.Role(f"{name}-rule-error-role",
                                  path=args.iam.path, permissions_boundary=args.iam.boundary,
                                  assume_role_policy=iot_trust, tags=tags,
                                  opts=child)
        error_policy = aws.iam.RolePolicy(
            f"{name}-rule-error-policy", role=error_role.id,
            policy=bucket.arn.apply(
                lambda arn: policies.dumps(policies.s3_put_under(arn, RULE_ERROR_PREFIX))),
            opts=child)
        aws.iot.TopicRule(
            f"{name}-telemetry-rule", name=f"iot_{args.env}_{region}_telemetry".replace("-", "_"),
            description="Device telemetry to the region's Kinesis stream",
            enabled=True, sql=TELEMETRY_SQL, sql_version=SQL_VERSION,
            kineses=[{"stream_name": stream.name, "role_arn": rule_role.arn,
                      "partition_key": "${topic(2)}"}],  # per-device ordering
            error_action={"s3": {"bucket_name": bucket.bucket, "role_arn": error_role.arn,
                                 "key": f"{RULE_ERROR_PREFIX}/${{newuuid()}}"}},
            region=region, tags=tags,
            opts=ResourceOptions(parent=self, depends_on=[rule_policy, error_policy]))

        firehose_trust = account_id.apply(lambda a: policies.dumps(
            policies.service_trust("firehose.amazonaws.com", a, condition_key="sts:ExternalId")))
        firehose_role = aws.iam.Role(f"{name}-firehose-role",
                                     path=args.iam.path, permissions_boundary=args.iam.boundary,
                                     assume_role_policy=firehose_trust,
                                     tags=tags, opts=child)
        firehose_policy = aws.iam.RolePolicy(
            f"{name}-firehose-policy", role=firehose_role.id,
            policy=Output.all(stream.arn, bucket.arn).apply(
                lambda a: policies.dumps(policies.firehose_delivery(a[0], a[1]))),
            opts=child)
        aws.kinesis.FirehoseDeliveryStream(
            f"{name}-lake-delivery", name=f"iot-{args.env}-{region}-lake", destination="extended_s3",
            kinesis_source_configuration={"kinesis_stream_arn": stream.arn, "role_arn": firehose_role.arn},
            extended_s3_configuration={
                "bucket_arn": bucket.arn, "role_arn": firehose_role.arn,
                "prefix": TELEMETRY_PREFIX, "error_output_prefix": FIREHOSE_ERROR_PREFIX,
                "buffering_size": 64, "buffering_interval": 300, "compression_format": "GZIP",
            },
            region=region, tags=tags,
            opts=ResourceOptions(parent=self, depends_on=[firehose_policy, encryption]))

        # -- MQTT canary: a real round trip every minute, the alarm DNS health follows (programs/canary.py)
        canary.declare(self, name, args, endpoint=endpoint.endpoint_address, account_id=account_id,
                       partition=partition, tags=tags, depends_on=[domain])

        # -- backups: the home region's stack keeps the vault in the backup region ----------------
        self.backup_bucket_name: Output[str] | None = None
        self.backup_signing_key: Output[str] | None = None
        if args.backup_region:
            # The vault may live in its own account (topology `accounts.backups`): then every backup
            # resource goes through a provider that assumes that account's role.
            provider = _backup_provider(name, args, self)
            vopts = ResourceOptions(parent=self, provider=provider)
            if provider is not None:
                invoke_b = pulumi.InvokeOptions(parent=self, provider=provider)
                account_id = aws.get_caller_identity_output(opts=invoke_b).account_id
                partition = aws.get_partition_output(opts=invoke_b).partition
            vault, vault_versioning, _ = _hardened_bucket(
                self, f"{name}-backups", f"iot-{args.env}-backups-", args.backup_region, tags,
                provider=provider)
            aws.s3.BucketLifecycleConfiguration(
                f"{name}-backups-retention", bucket=vault.id, region=args.backup_region,
                rules=[{"id": "backup-retention", "status": "Enabled", "filter": {"prefix": ""},
                        "expiration": {"days": BACKUP_RETENTION_DAYS},
                        "noncurrent_version_expiration": {"noncurrent_days": 7},
                        "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS}}],
                opts=ResourceOptions(parent=self, provider=provider, depends_on=[vault_versioning]))
            # Its own resource, not the bucket's `object_lock_enabled` (a create-time argument: set on
            # the existing, protected vault it would mean replacing it): PutObjectLockConfiguration
            # enables Object Lock on an existing versioned bucket as on a new one.
            aws.s3.BucketObjectLockConfiguration(
                f"{name}-backups-lock", bucket=vault.id, object_lock_enabled="Enabled",
                rule={"default_retention": {"mode": BACKUP_LOCK_MODE, "days": BACKUP_LOCK_DAYS}},
                region=args.backup_region,
                opts=ResourceOptions(parent=self, provider=provider, depends_on=[vault_versioning]))
            self.backup_bucket_name = vault.bucket
            # The key that signs backup manifests lives with the vault (the backup region): whoever
            # can write the bucket cannot sign for it (its own key policy gives kms:Sign to the backup
            # job's role `iot-<env>-backup` only; the account administers it and may verify), and a
            # restore during the primary's outage verifies against a region that is still up.
            # Asymmetric, so no rotation: old backups keep verifying. Protected: deleting it would
            # make every backup unverifiable.
            signer_role = Output.all(partition, account_id).apply(
                lambda a: f"arn:{a[0]}:iam::{a[1]}:role/{policies.backup_role_name(args.env)}")
            key_policy = Output.all(partition, account_id, signer_role).apply(
                lambda a: policies.dumps(policies.backup_signing_key_policy(a[1], [a[2]], a[0])))
            signing = aws.kms.Key(
                f"{name}-backup-signing", description=f"signs registry backup manifests of env {args.env}",
                customer_master_key_spec="ECC_NIST_P256", key_usage="SIGN_VERIFY", policy=key_policy,
                deletion_window_in_days=30, region=args.backup_region, tags=tags,
                opts=ResourceOptions(parent=self, provider=provider, protect=True))
            aws.kms.Alias(f"{name}-backup-signing-alias", name=f"alias/iot-{args.env}-backup-signing",
                          target_key_id=signing.key_id, region=args.backup_region,
                          opts=vopts)
            self.backup_signing_key = signing.arn.apply(lambda arn: f"awskms:{arn}")

        self.region = Output.from_input(region)
        self.iot_endpoint = endpoint.endpoint_address
        self.domain_configuration_name = domain.name
        self.domain_configuration_arn = domain.arn
        self.certificate_arn = validation.certificate_arn
        self.stream_name = stream.name
        self.stream_arn = stream.arn
        self.data_lake_bucket_name = bucket.bucket
        self.data_lake_bucket_arn = bucket.arn
        self.device_policy_name = device_policy.name
        self.register_outputs(self.exports())

    def exports(self) -> dict[str, Output[str]]:
        """The stack outputs, named exactly as `contract.REGION_OUTPUTS`."""
        values = [self.region, self.iot_endpoint, self.domain_configuration_name,
                  self.domain_configuration_arn, self.certificate_arn, self.stream_name,
                  self.stream_arn, self.data_lake_bucket_name, self.data_lake_bucket_arn,
                  self.device_policy_name]
        exports = dict(zip(REGION_OUTPUTS, values, strict=True))
        if self.backup_bucket_name is not None:
            exports[BACKUP_OUTPUT] = self.backup_bucket_name
        if self.backup_signing_key is not None:
            exports[SIGNING_KEY_OUTPUT] = self.backup_signing_key
        return exports


def _backup_provider(name: str, args: RegionArgs, parent: pulumi.Resource) -> aws.Provider | None:
    """With `backupRoleArn`: a provider in the backup region that assumes the vault account's role
    and carries the stack's provider settings (default tags, allowed accounts, endpoints)."""
    if not args.backup_role_arn:
        return None
    return _assuming_provider(f"{name}-backups-provider", args.backup_region, args.backup_role_arn,
                              f"orchestrate-{args.env}-backups", parent)


def _dns_provider(name: str, args: RegionArgs, parent: pulumi.Resource) -> aws.Provider | None:
    """With `dnsRoleArn` (the hosted zone lives in the DNS account, not this region's): a provider
    that assumes the DNS account's role, for the zone lookup and the ACM validation record."""
    if not args.dns_role_arn:
        return None
    return _assuming_provider(f"{name}-dns-provider", args.region, args.dns_role_arn,
                              f"orchestrate-{args.env}", parent)


def _assuming_provider(logical: str, region: str, role_arn: str, session: str,
                       parent: pulumi.Resource) -> aws.Provider:
    """A provider in `region` assuming `role_arn`, with the stack's provider settings (default tags,
    allowed accounts, endpoints and their checks)."""
    import json

    aws_config = pulumi.Config("aws")

    def setting(key: str) -> Any:
        raw = aws_config.get(key)
        return json.loads(raw) if raw else None

    return aws.Provider(
        logical, region=region,
        assume_roles=[aws.ProviderAssumeRoleArgs(role_arn=role_arn, session_name=session)],
        default_tags=setting("defaultTags"), allowed_account_ids=setting("allowedAccountIds"),
        endpoints=setting("endpoints"),
        skip_credentials_validation=aws_config.get_bool("skipCredentialsValidation"),
        skip_requesting_account_id=aws_config.get_bool("skipRequestingAccountId"),
        skip_metadata_api_check=aws_config.get_bool("skipMetadataApiCheck"),
        s3_use_path_style=aws_config.get_bool("s3UsePathStyle"),
        opts=ResourceOptions(parent=parent))


def _hardened_bucket(parent: pulumi.Resource, base: str, prefix: str, region: str, tags: dict[str, str],
                     provider: aws.Provider | None = None) -> tuple[aws.s3.Bucket, aws.s3.BucketVersioning,
                                aws.s3.BucketServerSideEncryptionConfiguration]:
    """A protected bucket with versioning, SSE-S3, every public access blocked, owner-enforced
    objects and a deny-insecure-transport policy (the data lake and the backup vault)."""
    child = ResourceOptions(parent=parent, provider=provider)
    bucket = aws.s3.Bucket(
        base, bucket_prefix=prefix, force_destroy=False,
        region=region, tags=tags, opts=ResourceOptions(parent=parent, provider=provider, protect=True))
    versioning = aws.s3.BucketVersioning(
        f"{base}-versioning", bucket=bucket.id,
        versioning_configuration={"status": "Enabled"}, region=region, opts=child)
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{base}-encryption", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        region=region, opts=child)
    public_block = aws.s3.BucketPublicAccessBlock(
        f"{base}-public-access", bucket=bucket.id, block_public_acls=True,
        block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
        region=region, opts=child)
    ownership = aws.s3.BucketOwnershipControls(
        f"{base}-ownership", bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"}, region=region,
        opts=ResourceOptions(parent=parent, provider=provider, depends_on=[public_block]))
    aws.s3.BucketPolicy(
        f"{base}-policy", bucket=bucket.id,
        policy=bucket.arn.apply(lambda arn: policies.dumps(policies.deny_insecure_transport(arn))),
        region=region, opts=ResourceOptions(parent=parent, provider=provider, depends_on=[public_block, ownership]))
    return bucket, versioning, encryption
