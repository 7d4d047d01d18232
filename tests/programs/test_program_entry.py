"""The program entry: config decoding, `programs/__main__.py`, and a Pulumi-free package root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from programs import main
from programs.contract import Sizing
from tests.programs.conftest import PRIMARY, SECONDARY, dns_args, region_args, replication_args

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args", [
    region_args(PRIMARY, sizing=Sizing("PROVISIONED", 4, 168, 30, 400)),
    dns_args("failover", PRIMARY, SECONDARY),
    replication_args(SECONDARY),
], ids=["region", "dns", "replication"])
def test_stack_config_decodes_back_to_the_same_args(args) -> None:
    config = args.to_config()
    assert main.decode(config.get) == args


def test_missing_config_names_the_key() -> None:
    config = region_args().to_config()
    del config["domain"]
    with pytest.raises(ValueError, match="iot-platform:domain"):
        main.decode(config.get)


def test_package_root_and_contract_do_not_import_pulumi() -> None:
    code = ("import sys, programs, programs.contract, programs.policies; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


BOOTSTRAP = """
import json, runpy, sys
import pulumi
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

registered = []

class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        registered.append(args.typ)
        return args.name + "-id", dict(args.inputs, fqdn="iot.example.com")

    def call(self, args):
        return {"id": "Z1", "zoneId": "Z1", "name": "example.com"}

pulumi.runtime.set_all_config(json.loads(sys.argv[2]))
pulumi.runtime.set_mocks(Mocks(), project="iot-platform", stack="dev-dns", preview=False)
runpy.run_path(sys.argv[1], run_name="__main__")
_sync_await(wait_for_rpcs())
print(json.dumps(sorted(registered)))
"""


@pytest.mark.slow
def test_main_script_runs_the_program_from_any_working_directory(tmp_path: Path) -> None:
    """`pulumi up` runs programs/ by path: the script must find the package on its own."""
    config = {f"iot-platform:{k}": v for k, v in dns_args("single", PRIMARY).to_config().items()}
    out = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, str(REPO / "programs" / "__main__.py"), json.dumps(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        "aws:route53/record:Record", "iotplatform:dns:GlobalDns"]
