"""`up --all` for 3 regions through the REAL Pulumi engine (stand-in AWS provider, file backend).

What it measures, in one run of the installed `orchestrate --json up --all --parallel 3`:

- **parallel speed-up**: the sum of the per-stack times the run itself reports (the journal's
  `seconds`, measured by the engine around each stack's whole `up`: workspace, config, the update,
  outputs) divided by the wall time of the process;
- **orchestrator overhead per stack**: that per-stack time minus the time spent inside `pulumi`
  subprocesses for that stack. A shim `pulumi` first on PATH (the engine derives the CLI from PATH)
  logs the start and end of every CLI call with its `--stack`; everything else in the stack's time
  is the orchestrator's own (Automation API plumbing in Python, thread start, result parsing). The
  inline program is served by the orchestrate process *while* `pulumi up` waits for it, so program
  evaluation counts as CLI time here, as it would with a local program;
- process start-up (start to the first CLI call) and tail (last CLI call to exit).

A second run with `--parallel 1` (fresh backend) is the sequential reference. The replication
stack's registry sync talks to a moto server (`--endpoint-url`). Needs the engine tier's CLI
(tests/engine/build_pulumi.sh, cached) and moto.

Run: .venv/bin/python -m bench.engine_up [--repeat 1] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from bench._report import machine, write_section
from tests.engine.conftest import BUILD_SCRIPT, install_fake_plugins, make_env
from tests.engine.helpers import ORCHESTRATE, OrchestrateProject, dev_topology, hermetic_aws_env, moto_post
from tests.moto_server import STRICT_MOTO

SECTION = "Real engine: up --all"
REGIONS = ["eu-west-1", "eu-central-1", "eu-north-1"]


def pulumi_bin() -> Path:
    root = os.environ.get("ORCHESTRATE_PULUMI_ROOT")
    if root:
        return Path(root) / "bin"
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"no Pulumi CLI (build_pulumi.sh exit {proc.returncode}): {proc.stderr[-800:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def write_shim(real: Path, root: Path, log: Path) -> Path:
    """<root>/bin/pulumi: runs the real CLI, appends `start end rc args` to `log`."""
    shim = root / "bin" / "pulumi"
    shim.parent.mkdir(parents=True)
    shim.write_text(
        "#!/bin/sh\n"
        "s=$(date +%s.%N)\n"
        f"{shlex.quote(str(real))} \"$@\"\n"
        "rc=$?\n"
        f"echo \"$s $(date +%s.%N) $rc $*\" >> {shlex.quote(str(log))}\n"
        "exit $rc\n")
    shim.chmod(0o755)
    return shim.parent


def start_moto(base: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # the strict world's moto, as every test tier runs it (plain moto answers 500 to calls the
    # registry sync makes, e.g. ListCACertificates)
    proc = subprocess.Popen([sys.executable, "-c", STRICT_MOTO, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=hermetic_aws_env(os.environ, base))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            moto_post(f"{url}/moto-api/reset", timeout=1.0)
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("moto server did not start") from None
            time.sleep(0.1)


@dataclass
class Run:
    parallel: int
    wall: float
    stack_seconds: dict[str, float]
    cli_seconds: dict[str, float]
    cli_calls: dict[str, int]
    startup: float
    tail: float
    cpu: float  # user + system seconds of orchestrate and everything it started

    @property
    def total(self) -> float:
        return sum(self.stack_seconds.values())

    def overhead(self, stack: str) -> float:
        return self.stack_seconds[stack] - self.cli_seconds.get(stack, 0.0)


def new_project(bin_dir: Path, base: Path) -> tuple[OrchestrateProject, Path]:
    """A project of 3 regions (latency routing) on a fresh file backend under `base`, its `pulumi`
    the logging shim; returns it and the shim's log."""
    base.mkdir(parents=True, exist_ok=True)
    home = base / "pulumi-home"
    install_fake_plugins(home)
    log = base / "cli-calls.log"
    log.touch()
    shim_bin = write_shim(bin_dir / "pulumi", base / "shim", log)
    state = base / "state"
    state.mkdir()
    env = make_env(shim_bin, home, f"file://{state}")
    tools = SimpleNamespace(environ=lambda **kw: {**env, **kw})
    return OrchestrateProject(tools, base / "p", dev_topology(
        secondaries=REGIONS[1:], routing="latency", residency=REGIONS)), log


def one_run(bin_dir: Path, moto: str, base: Path, parallel: int) -> Run:
    project, log = new_project(bin_dir, base)
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    proc = subprocess.run([str(ORCHESTRATE), "--json", "up", "--all", "--yes", "--parallel", str(parallel),
                           "--endpoint-url", moto], cwd=project.root, env=project.env,
                          capture_output=True, text=True, timeout=600, check=False)
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"up --all failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    stack_seconds = {name: float(s["seconds"]) for name, s in report["stacks"].items()}
    cli_seconds: dict[str, float] = defaultdict(float)
    cli_calls: dict[str, int] = defaultdict(int)
    first, last = ended, started
    for line in log.read_text().splitlines():
        s, e, _rc, *args = line.split()
        s_f, e_f = float(s), float(e)
        first, last = min(first, s_f), max(last, e_f)
        stack = args[args.index("--stack") + 1] if "--stack" in args else "?"
        cli_seconds[stack] += e_f - s_f
        cli_calls[stack] += 1
    return Run(parallel, ended - started, stack_seconds, dict(cli_seconds), dict(cli_calls),
               first - started, ended - last, cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs of each mode (the median run is reported)")
    ap.add_argument("--write", action="store_true", help=f"write the '{SECTION}' section of docs/performance.md")
    args = ap.parse_args()

    bin_dir = pulumi_bin()
    load_before = os.getloadavg()[0]
    versions = dict(line.split("=", 1) for line in (bin_dir / "VERSIONS").read_text().splitlines()
                    if "=" in line) if (bin_dir / "VERSIONS").exists() else {}
    with tempfile.TemporaryDirectory(prefix="bench-engine-up-") as tmp:
        moto_proc, moto = start_moto(Path(tmp))
        try:
            runs: dict[int, list[Run]] = {3: [], 1: []}
            for i in range(args.repeat):
                for parallel in (3, 1):
                    run = one_run(bin_dir, moto, Path(tmp) / f"run-{parallel}-{i}", parallel)
                    runs[parallel].append(run)
                    print(f"--parallel {parallel}: wall {run.wall:.1f}s, sum of stacks {run.total:.1f}s, "
                          f"cpu {run.cpu:.1f}s, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        finally:
            moto_proc.terminate()
            moto_proc.wait(timeout=10)

    def median(rs: list[Run]) -> Run:
        return sorted(rs, key=lambda r: r.wall)[len(rs) // 2]

    par, seq = median(runs[3]), median(runs[1])
    stacks = list(par.stack_seconds)
    rows = ["| stack | seconds (run's journal) | in `pulumi` (calls) | orchestrator overhead | "
            "same stack, --parallel 1 | overhead, --parallel 1 |",
            "|:--|--:|--:|--:|--:|--:|"]
    for name in stacks:
        rows.append(f"| `{name}` | {par.stack_seconds[name]:.2f} | {par.cli_seconds.get(name, 0):.2f} "
                    f"({par.cli_calls.get(name, 0)}) | **{par.overhead(name):.2f}** | "
                    f"{seq.stack_seconds[name]:.2f} | {seq.overhead(name):.2f} |")
    overheads = [par.overhead(n) for n in stacks]
    seq_overheads = [seq.overhead(n) for n in stacks]
    summary = [
        "| run | wall (s) | sum of per-stack times (s) | sum / wall (speed-up) | CPU (s, all processes) "
        "| start-up to first CLI call (s) | last CLI call to exit (s) |",
        "|:--|--:|--:|--:|--:|--:|--:|",
        f"| `up --all --parallel 3` | {par.wall:.1f} | {par.total:.1f} | **{par.total / par.wall:.2f}** | "
        f"{par.cpu:.1f} | {par.startup:.2f} | {par.tail:.2f} |",
        f"| `up --all --parallel 1` | {seq.wall:.1f} | {seq.total:.1f} | {seq.total / seq.wall:.2f} | "
        f"{seq.cpu:.1f} | {seq.startup:.2f} | {seq.tail:.2f} |",
    ]
    cli = versions.get("pulumi_cli", "?")
    cores = os.cpu_count() or 1
    body = "\n".join([
        f"3 region stacks (latency routing) + DNS + replication = {len(stacks)} stacks, through the real Pulumi "
        f"CLI {cli} with the stand-in provider plugins (tests/engine), a file backend and a passphrase; the "
        f"replication stack's registry sync against a moto server. {machine()}; median (by wall) of "
        f"{args.repeat} run(s) per mode; 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (the machine is shared: other work competes for the 2 cores).",
        "",
        *summary,
        "",
        f"Against the sequential run's wall time, `--parallel 3` is **{seq.wall / par.wall:.2f}x** faster "
        f"({seq.wall:.1f} s -> {par.wall:.1f} s).",
        "",
        *rows,
        "",
        f"Orchestrator overhead per stack (--parallel 3): median {statistics.median(overheads):.2f} s, "
        f"max {max(overheads):.2f} s; sequential: median {statistics.median(seq_overheads):.2f} s.",
        "",
        "Method: *seconds* is what the run itself journals per stack (the engine times each stack's whole "
        "`up`: workspace, config, update, outputs). A shim `pulumi` first on PATH (the engine takes the CLI "
        "from PATH) logs every CLI call with its `--stack`; *in `pulumi`* is their sum per stack, and the "
        "*overhead* is the rest: Python-side Automation API work in the orchestrate process. The inline "
        "program runs in the orchestrate process while `pulumi up` waits for it, so it counts as CLI "
        "time. *Speed-up* is the sum of the per-stack times over the process's wall time: how much stack "
        "work ran at once. With few cores the three region updates (each a Go CLI, two Python plugin "
        "processes and a program thread sharing this process's GIL) contend for CPU. The run needs about "
        f"the same CPU time either way (*CPU* column), so {cores} cores cannot finish it in less than "
        f"CPU / {cores} = {par.cpu / cores:.1f} s of wall time; each stack takes longer in parallel than "
        "alone (compare the --parallel 1 column), and the orchestrator's overhead per stack grows with it "
        "(its Python threads wait for the GIL and the cores).",
        "",
        f"Reproduce: `.venv/bin/python -m bench.engine_up --repeat {args.repeat} --write` (needs the engine "
        "tier's CLI: `PYTHON=.venv/bin/python tests/engine/build_pulumi.sh`, cached after the first build).",
    ])
    print(body)
    if args.write:
        print(f"\nwrote {write_section(SECTION, body)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
