"""PulumiEngine's state operations against the real CLI: secrets stay encrypted.

`orchestrate registry backup` stores `engine.export(stack)` for every stack. The Automation API's
`Stack.export_stack` passes `--show-secrets`; the engine must not, or every backup would carry the
stacks' secrets in plain text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from orchestrator.engine.pulumi import PulumiEngine

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
PLAINTEXT = "hunter2-engine-tier"


def _engine(pulumi_tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PulumiEngine:
    # the engine runs the CLI with os.environ (+ its own few variables): make it the tier's
    for key in [k for k in os.environ if k.startswith("PULUMI_")]:
        monkeypatch.delenv(key)
    for key, value in pulumi_tools.env.items():
        monkeypatch.setenv(key, value)
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: iot-platform\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "state").mkdir()
    return PulumiEngine(project_dir=project, stacks_dir=project / "stacks",
                        backend_url=f"file://{tmp_path / 'state'}", secrets_provider="passphrase",
                        endpoint_url=None, cli=pulumi_tools.cli)


def test_export_keeps_secrets_encrypted(pulumi_tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(pulumi_tools, tmp_path, monkeypatch)
    stack = "dev-region-eu-west-1"
    manifest = {"time": "2026-01-01T00:00:00Z", "magic": "", "version": ""}
    engine.import_(stack, {"version": 3, "deployment": {"manifest": manifest, "resources": []}})
    # a state holding a secret output, as a program with a secret would leave it: plaintext
    # secrets are imported through the stack's passphrase secrets manager (its salt)
    salt = yaml.safe_load((engine.stacks_dir / f"Pulumi.{stack}.yaml").read_text())["encryptionsalt"]
    urn = f"urn:pulumi:{stack}::iot-platform::pulumi:pulumi:Stack::iot-platform-{stack}"
    secret = {SIG_KEY: SECRET_SIG, "plaintext": json.dumps(PLAINTEXT)}
    engine.import_(stack, {"version": 3, "deployment": {
        "manifest": manifest,
        "secrets_providers": {"type": "passphrase", "state": {"salt": salt}},
        "resources": [{"urn": urn, "custom": False, "type": "pulumi:pulumi:Stack",
                       "outputs": {"token": secret, "region": "eu-west-1"}}],
    }})

    exported = engine.export(stack)

    text = json.dumps(exported)
    assert PLAINTEXT not in text
    token = exported["deployment"]["resources"][0]["outputs"]["token"]
    assert token[SIG_KEY] == SECRET_SIG and "ciphertext" in token and "plaintext" not in token
    # the same export imports back (a restore), and the value is still the secret it was
    engine.import_(stack, exported)
    assert engine.outputs(stack)["token"].secret is True
    assert engine.outputs(stack)["token"].value == PLAINTEXT
    assert PLAINTEXT not in repr(engine.outputs(stack))


def test_state_metadata_torn_by_a_killed_cli_is_repaired(pulumi_tools, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL between the file backend's checkpoint write and its `.attrs` sidecar (seen in the
    kill test, about 1 run in 10) left every later command failing with "failed to load
    checkpoint: EOF"."""
    engine = _engine(pulumi_tools, tmp_path, monkeypatch)
    stack = "dev-dns"
    manifest = {"time": "2026-01-01T00:00:00Z", "magic": "", "version": ""}
    urn = f"urn:pulumi:{stack}::iot-platform::pulumi:pulumi:Stack::iot-platform-{stack}"
    engine.import_(stack, {"version": 3, "deployment": {"manifest": manifest, "resources": [
        {"urn": urn, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": {"fqdn": "iot.example.com"}}]}})
    [sidecar] = (tmp_path / "state" / ".pulumi" / "stacks").rglob(f"{stack}.json.attrs")
    sidecar.write_text("")  # what the killed CLI left: created, never written
    broken = pulumi_tools.run("stack", "export", "--stack", stack, cwd=engine.project_dir,
                              env=pulumi_tools.environ(PULUMI_BACKEND_URL=engine.backend_url), check=False)
    assert broken.returncode != 0 and "failed to load checkpoint" in broken.stderr

    assert engine.outputs(stack)["fqdn"].value == "iot.example.com"
    assert not sidecar.exists()
    assert engine.info(stack).deployed is False  # only the stack resource: nothing "deployed"
