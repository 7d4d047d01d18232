"""Helpers of the engine tier's end-to-end tests: `orchestrate` over a temp copy of the project.

The fixtures that hand these out live in conftest.py (`make_project`, `moto_server`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENGINE_DIR = Path(__file__).resolve().parent
REPO = ENGINE_DIR.parents[1]
ORCHESTRATE = Path(sys.executable).with_name("orchestrate")
"""The installed console script of the venv running the tests."""
RUN_TIMEOUT_S = 240.0
"""Upper bound for one `orchestrate` invocation (a 3-region `up --all` takes ~30 s on 2 cores)."""


def hermetic_aws_env(env: Mapping[str, str], root: Path) -> dict[str, str]:
    """`env` without any AWS_*/ORCHESTRATE_* of the developer, with dummy credentials only: no
    profile, config file, metadata service or proxy can be reached."""
    out = {k: v for k, v in env.items()
           if not k.startswith(("AWS_", "ORCHESTRATE_")) and k.lower() not in {"http_proxy", "https_proxy",
                                                                            "all_proxy"}}
    out.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
    )
    return out


class OrchestrateProject:
    """A temp project (the repo's Pulumi.yaml + stacks/*.topology.yaml), its own file backend,
    provider log and fake AWS account (FAKE_AWS_STATE_DIR), driven through `orchestrate`."""

    def __init__(self, tools: Any, base: Path, topology: Mapping[str, Any] | None = None) -> None:
        self.tools = tools
        self.base = base
        self.root = base / "project"
        self.stacks = self.root / "stacks"
        self.stacks.mkdir(parents=True)
        shutil.copy(REPO / "Pulumi.yaml", self.root / "Pulumi.yaml")
        for path in (REPO / "stacks").glob("*.topology.yaml"):
            shutil.copy(path, self.stacks / path.name)
        self.state = base / "state"
        self.state.mkdir()
        self.provider_log = base / "provider.log"
        self.account = base / "aws-account"
        self.env = hermetic_aws_env(tools.environ(
            PULUMI_BACKEND_URL=f"file://{self.state}",
            FAKE_PROVIDER_LOG=str(self.provider_log),
            FAKE_AWS_STATE_DIR=str(self.account),
        ), base)
        if topology is not None:
            self.write_topology(topology)

    # -- topology ---------------------------------------------------------------------------
    @property
    def topology_path(self) -> Path:
        return self.stacks / "dev.topology.yaml"

    def read_topology(self) -> dict[str, Any]:
        return yaml.safe_load(self.topology_path.read_text())

    def write_topology(self, data: Mapping[str, Any]) -> None:
        self.topology_path.write_text(yaml.safe_dump(dict(data), sort_keys=False))

    # -- running orchestrate ------------------------------------------------------------------
    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def run(self, *args: str, env: Mapping[str, str] | None = None, expect: int | None = 0,
            timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """`orchestrate <args>` in the project root; asserts the exit code unless expect=None."""
        proc = subprocess.run([str(ORCHESTRATE), *args], cwd=self.root, env=self._env(env),
                              stdin=subprocess.DEVNULL,  # never a terminal: nobody answers a prompt
                              capture_output=True, text=True, timeout=timeout, check=False)
        if expect is not None and proc.returncode != expect:
            raise AssertionError(
                f"orchestrate {' '.join(args)} exited {proc.returncode}, expected {expect}\n"
                f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
        return proc

    def json(self, *args: str, env: Mapping[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "--json", env=env).stdout)

    def start(self, *args: str, env: Mapping[str, str] | None = None, name: str = "bg") -> subprocess.Popen:
        """`orchestrate <args>` in the background, in its own process group (killable as a whole);
        stdout/stderr go to <base>/<name>.out / .err."""
        out = (self.base / f"{name}.out").open("w")
        err = (self.base / f"{name}.err").open("w")
        try:
            return subprocess.Popen([str(ORCHESTRATE), *args], cwd=self.root, env=self._env(env),
                                    stdout=out, stderr=err, text=True, start_new_session=True)
        finally:
            out.close()
            err.close()

    def output_of(self, name: str) -> str:
        return (self.base / f"{name}.out").read_text() + (self.base / f"{name}.err").read_text()

    # -- reading what the engine left -------------------------------------------------------------
    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The plain CLI with the project root as cwd (its Pulumi.yaml says stackConfigDir: stacks)."""
        return self.tools.run(*args, cwd=self.root, env=self.env, check=check, timeout=120)

    def export(self, stack: str) -> dict[str, Any]:
        return json.loads(self.pulumi("stack", "export", "--stack", stack).stdout)

    def resources(self, stack: str) -> list[dict[str, Any]]:
        """The stack's resources in the backend, without the stack itself and default providers."""
        deployment = self.export(stack).get("deployment") or {}
        return [r for r in deployment.get("resources") or []
                if not str(r.get("type", "")).startswith("pulumi:")]

    def config_files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.stacks.glob("Pulumi.*.yaml"))}

    def provider_events(self) -> list[dict[str, Any]]:
        if not self.provider_log.exists():
            return []
        return [json.loads(line) for line in self.provider_log.read_text().splitlines() if line.strip()]

    def wait_for_event(self, op: str, urn_part: str, timeout: float = 90.0,
                       proc: subprocess.Popen | None = None) -> dict[str, Any]:
        """Block until the provider log has `op` on a URN containing `urn_part` (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.provider_events():
                if event.get("op") == op and urn_part in event.get("urn", ""):
                    return event
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the process exited ({proc.returncode}) before {op} of {urn_part}")
            time.sleep(0.2)
        raise AssertionError(f"no {op} of *{urn_part}* in the provider log within {timeout:.0f}s")


def dev_topology(**changes: Any) -> dict[str, Any]:
    """The repo's dev topology with `changes` applied (top-level keys)."""
    import yaml

    data = yaml.safe_load((REPO / "stacks" / "dev.topology.yaml").read_text())
    data.update(changes)
    return data




def moto_post(url: str, timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
        return int(response.status)


def reset_moto(url: str) -> None:
    """Empty every region of the moto server."""
    assert moto_post(f"{url}/moto-api/reset") == 200


def gate_children(checks: dict[str, Any], gate_id: str, env: str = "dev") -> tuple[str, str]:
    """A record's health check is the CALCULATED gate over its region's TCP check and MQTT canary
    alarm check (programs/dns.py): (the TCP check's fqdn, the alarm the other child watches)."""
    gate = checks[gate_id]
    assert gate["type"] == "CALCULATED" and gate["childHealthThreshold"] == 2, gate
    kids = {checks[c]["type"]: checks[c] for c in gate["childHealthchecks"]}
    assert set(kids) == {"TCP", "CLOUDWATCH_METRIC"}, kids
    metric = kids["CLOUDWATCH_METRIC"]
    assert metric["insufficientDataHealthStatus"] == "Unhealthy"
    return kids["TCP"]["fqdn"], metric["cloudwatchAlarmName"]
