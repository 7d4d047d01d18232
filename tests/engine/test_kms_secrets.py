"""KMS-only stacks through the real CLI: no passphrase anywhere, the KMS key served by moto.

The Pulumi CLI's awskms keeper uses the AWS SDK, which honours AWS_ENDPOINT_URL: with
`--endpoint-url` the engine sets it, so the CLI's KMS calls reach the moto server too.
"""

from __future__ import annotations

import boto3
import yaml

from tests.engine.helpers import OrchestrateProject, dev_topology

STACK = "dev-region-eu-west-1"


def test_kms_stacks_run_without_a_passphrase_and_a_different_provider_is_refused(make_project,
                                                                                 moto_server: str) -> None:
    kms = boto3.client("kms", region_name="eu-west-1", endpoint_url=moto_server,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    key = kms.create_key(Description="iot state secrets")["KeyMetadata"]["KeyId"]
    provider = f"awskms://{key}?region=eu-west-1"
    project: OrchestrateProject = make_project(dev_topology())
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        project.env.pop(name, None)  # no passphrase at all from here on

    up = project.json("up", "--yes", "--region", "eu-west-1", "--endpoint-url", moto_server,
                      "--secrets-provider", provider)
    assert up["ok"] is True, up
    config = yaml.safe_load((project.stacks / f"Pulumi.{STACK}.yaml").read_text())
    assert config["secretsprovider"] == provider and "encryptionsalt" not in config

    # the next run names no provider and has no passphrase: the stacks' own (KMS) is used
    status = project.json("status", "--endpoint-url", moto_server, env={"ORCHESTRATE_BACKUP_DEST": str(project.base)})
    assert {s["name"]: s["deployed"] for s in status["stacks"]} == {STACK: True, "dev-dns": True}
    again = project.json("up", "--yes", "--region", "eu-west-1", "--endpoint-url", moto_server)
    assert again["ok"] is True, again

    # a provider the stacks do not use is refused before anything runs, not silently ignored
    refused = project.run("up", "--yes", "--region", "eu-west-1", "--endpoint-url", moto_server,
                          "--secrets-provider", "passphrase", expect=2)
    assert "dev-dns, dev-region-eu-west-1 use awskms://" in refused.stderr, refused.stderr
    assert "orchestrate secrets change-provider" in refused.stderr

    # changing it is explicit: re-encrypted with a passphrase through the CLI, then usable with it
    passphrase = {"PULUMI_CONFIG_PASSPHRASE": "a-new-team-passphrase"}
    changed = project.json("secrets", "change-provider", "--to", "passphrase", "--yes", "--endpoint-url", moto_server,
                           env=passphrase)
    assert changed["changed"] == ["dev-region-eu-west-1", "dev-dns"], changed
    config = yaml.safe_load((project.stacks / f"Pulumi.{STACK}.yaml").read_text())
    assert config.get("encryptionsalt") and config.get("secretsprovider", "passphrase") == "passphrase", config
    after = project.json("up", "--yes", "--region", "eu-west-1", "--endpoint-url", moto_server, env=passphrase)
    assert after["ok"] is True, after
