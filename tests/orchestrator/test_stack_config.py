"""`stacks/Pulumi.<stack>.yaml`: `up` merges its keys into the file (a user's own keys stay) and
keeps a copy in the backend's run state (tests/ops/test_ops_stack_config.py restores it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.engine.pulumi import PulumiEngine, orchestrator_owns, restore_stack_configs
from orchestrator.engine.types import StackSpec
from orchestrator.state import LocalStore, StateLayout

USER_FILE = """\
secretsprovider: awskms://alias/iot-state?region=eu-west-1
encryptedkey: AQICAHhKMSencrypteddatakey==
config:
  aws:region: eu-west-1
  aws:defaultTags:
    tags:
      CostCenter: "4711"
  aws:allowedAccountIds:
    - "123456789012"
  aws:assumeRoles:
    - roleArn: arn:aws:iam::123456789012:role/deployer
  aws:skipMetadataApiCheck: "true"
  iot-platform:retired_option: "x"
  iot-platform:domain: old.example.com
"""


class FileStack:
    """What `pulumi config` does to the stack file: get-all, rm-all, set-all on `config:`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _doc(self) -> dict[str, Any]:
        return yaml.safe_load(self.path.read_text()) or {}

    def _write(self, doc: dict[str, Any]) -> None:
        self.path.write_text(yaml.safe_dump(doc, sort_keys=True))

    def get_all_config(self) -> dict[str, Any]:
        return dict(self._doc().get("config") or {})

    def remove_all_config(self, keys: list[str]) -> None:
        doc = self._doc()
        for k in keys:
            doc["config"].pop(k)
        self._write(doc)

    def set_all_config(self, values: dict[str, Any]) -> None:
        doc = self._doc()
        doc.setdefault("config", {}).update({k: v.value for k, v in values.items()})
        self._write(doc)


def engine(project: Path, run_state: StateLayout | None) -> PulumiEngine:
    return PulumiEngine(project_dir=project, stacks_dir=project / "stacks", backend_url="file:///nowhere",
                        secrets_provider=None, endpoint_url=None, cli=Path("/bin/false"), run_state=run_state)


def test_up_keeps_the_keys_a_user_added_and_removes_only_its_own_stale_ones(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    path = tmp_path / "stacks" / "Pulumi.dev-region-eu-west-1.yaml"
    path.write_text(USER_FILE)
    spec = StackSpec("dev-region-eu-west-1", "region", "eu-west-1",
                     {"aws:region": "eu-west-1", "iot-platform:domain": "iot.example.com"})
    engine(tmp_path, None)._configure_for_up(FileStack(path), spec)
    doc = yaml.safe_load(path.read_text())
    config = doc["config"]
    assert config["aws:defaultTags"] == {"tags": {"CostCenter": "4711"}}
    assert config["aws:allowedAccountIds"] == ["123456789012"]
    assert config["aws:assumeRoles"] == [{"roleArn": "arn:aws:iam::123456789012:role/deployer"}]
    assert config["iot-platform:domain"] == "iot.example.com"
    assert "iot-platform:retired_option" not in config  # the orchestrator's own key, no longer wanted
    assert "aws:skipMetadataApiCheck" not in config  # an endpoint override an older version wrote
    assert doc["secretsprovider"].startswith("awskms://") and doc["encryptedkey"]


def test_the_orchestrator_owns_its_namespace_and_the_region_only() -> None:
    assert orchestrator_owns("iot-platform:domain") and orchestrator_owns("aws:region")
    assert not orchestrator_owns("aws:defaultTags") and not orchestrator_owns("aws:assumeRoles")
    assert not orchestrator_owns("aws:allowedAccountIds") and not orchestrator_owns("myteam:owner")


def test_up_copies_the_file_to_the_run_state_and_a_clone_without_it_restores_it(tmp_path: Path) -> None:
    backend = LocalStore(tmp_path / "backend" / ".orchestrate")
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "stacks").mkdir(parents=True)
    path = a / "stacks" / "Pulumi.dev-dns.yaml"
    path.write_text(USER_FILE)
    spec = StackSpec("dev-dns", "dns", "eu-west-1", {"aws:region": "eu-west-1"})
    engine(a, StateLayout(a, backend))._configure_for_up(FileStack(path), spec)
    restored = restore_stack_configs(StateLayout(b, backend), b / "stacks", "dev")
    assert restored == [b / "stacks" / "Pulumi.dev-dns.yaml"]
    assert restored[0].read_bytes() == path.read_bytes()
    assert restore_stack_configs(StateLayout(b, backend), b / "stacks", "dev") == []  # a file is never replaced
    assert restore_stack_configs(StateLayout(b, backend), b / "stacks", "prod") == []


def test_a_preview_never_puts_its_config_into_the_backend(tmp_path: Path) -> None:
    """A preview configures the stack too (placeholders included) and puts the file back: its
    config must not travel."""
    backend = LocalStore(tmp_path / "backend" / ".orchestrate")
    (tmp_path / "stacks").mkdir()
    path = tmp_path / "stacks" / "Pulumi.dev-dns.yaml"
    path.write_text(USER_FILE)
    spec = StackSpec("dev-dns", "dns", "eu-west-1", {"iot-platform:endpoint": "placeholder:eu-west-1"})
    engine(tmp_path, StateLayout(tmp_path, backend))._configure(FileStack(path), spec)
    assert backend.keys("stacks/") == []
