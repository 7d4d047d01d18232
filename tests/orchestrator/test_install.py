"""A fresh clone's set-up and test run: the Makefile, scripts/setup_venv.sh, constraints.txt, .ci/run.

`make plan` sets up the runtime dependencies only, `make test` the test extra; every version any
install pulls is pinned in constraints.txt, with uv or pip; the quick tiers run first; .ci/run sums
every tier's JUnit file and fails on any failure or when no test ran.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
SETUP = REPO / "scripts" / "setup_venv.sh"
PROJECT = "iot-platform-orchestrate"
# Put in every virtual environment by `python -m venv` (ensurepip), not installed from the index.
VENV_BOOTSTRAP = {"pip", "setuptools"}
QUICK = ["lint", "programs", "orchestrator"]
SLOW = ["ops", "engine", "drill"]


def pinned_lines() -> list[tuple[str, str, list[str]]]:
    """constraints.txt's pins: (name, version, sha256 hashes), one per logical line (a pin's hashes
    are `--hash=sha256:...` continuation lines after it)."""
    out = []
    for line in CONSTRAINTS.read_text().replace("\\\n", " ").splitlines():
        if not line or line.startswith("#"):
            continue
        pin, *options = line.split()
        name, sep, version = pin.partition("==")
        assert sep and re.fullmatch(r"[A-Za-z0-9_.\-]+", name) and re.fullmatch(r"[0-9][0-9A-Za-z.+]*", version), line
        hashes = []
        for option in options:
            assert option.startswith("--hash=sha256:"), f"{pin}: {option} is not a sha256 hash"
            hashes.append(option.removeprefix("--hash=sha256:"))
        out.append((name, version, hashes))
    return out


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, version, _ in pinned_lines():
        key = canonicalize_name(name)
        assert key not in out, f"{name} pinned twice"
        out[key] = version
    return out


# What a caller's make (e.g. .ci/run's `make test JUNIT_DIR=...` running this suite) would pass down.
# ALL and BASE: `make test-fast ALL=1` (or BASE=REV) exports them to the tests it runs.
MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "JUNIT_DIR", "PYTEST_ARGS", "VENV", "INSTALLER",
            "ALL", "BASE")


def make_dry_run(*args: str) -> list[str]:
    """The commands `make` would run (recipes printed, nothing executed, sub-makes included)."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_ENV}
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-B", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def setups(lines: list[str]) -> list[str]:
    """The extras each scripts/setup_venv.sh call installs, in order ("" is the runtime only)."""
    return [shlex.split(line)[2] for line in lines if line.startswith("scripts/setup_venv.sh ")]


def tiers(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(tier, pytest arguments) of each tier `make` would run, in order."""
    out = []
    for line in lines:
        if " -m pytest " in line:
            args = shlex.split(line.split(" -m pytest ", 1)[1].split(" || ", 1)[0])
            junit = [a for a in args if a.startswith("--junitxml=")]
            name = Path(junit[0].split("=", 1)[1]).stem if junit else "?"
            out.append((name, args))
    return out


def installed(python: str) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {canonicalize_name(k): v for k, v in json.loads(proc.stdout).items()}


def test_every_dependency_and_build_requirement_resolves_to_one_pin() -> None:
    pinned = pins()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for extra in project["project"]["optional-dependencies"].values():
        requirements += extra
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{req.name}=={pinned[name]} is not {req}"
    # The build backend the isolated build installs, and the uv `make` installs, are pinned too.
    assert project["build-system"]["build-backend"] == "hatchling.build"
    assert {"hatchling", "trove-classifiers", "uv"} <= set(pinned)


def test_this_environment_holds_only_pinned_versions() -> None:
    """Whatever installer set up the venv the suite runs in, it installed exactly the pinned versions."""
    pinned = pins()
    found = installed(sys.executable)
    assert PROJECT in found
    unpinned = {name: version for name, version in found.items()
                if name != PROJECT and name not in VENV_BOOTSTRAP and pinned.get(name) != version}
    assert unpinned == {}, f"installed but not pinned at that version in constraints.txt: {unpinned}"
    for package in ("pulumi", "pulumi-aws", "boto3", "pytest", "moto", "ruamel-yaml", "awsiotsdk"):
        assert found[package] == pinned[package]


def test_plan_sets_up_the_runtime_dependencies_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    plan = make_dry_run("plan", f"VENV={venv}")
    assert setups(plan) == [""]
    assert plan[-1] == f"{venv}/bin/orchestrate --env dev plan --all --json"
    assert not any(".installed" in line or "test,drill" in line for line in plan)
    assert setups(make_dry_run("drill", f"VENV={venv}")) == ["", "drill"]
    for target in ("test", "test-fast", "lint"):
        assert setups(make_dry_run(target, f"VENV={venv}"))[:2] == ["", "test,drill"], target


def test_make_test_runs_the_quick_tiers_first_stopping_at_a_failure_then_the_slow_ones(tmp_path: Path) -> None:
    junit = tmp_path / "junit"
    run = tiers(make_dry_run("test", f"VENV={tmp_path / 'venv'}", f"JUNIT_DIR={junit}", "PYTEST_ARGS=-k probe"))
    assert [name for name, _ in run] == QUICK + SLOW
    for name, args in run:
        assert f"--junitxml={junit}/{name}.xml" in args and args[-2:] == ["-k", "probe"], name
        assert ("-x" in args) == (name in QUICK), name
    assert tiers(make_dry_run("test-quick", f"JUNIT_DIR={junit}", "PYTEST_ARGS=-k probe")) == run[:3]
    # test-fast: the lint tier without mypy, then the programs and orchestrator files the change
    # reaches (scripts/affected_tests.py runs them, without the tests marked slow: see
    # test_affected_tests.py); make test runs every test (no tier of it selects by marker).
    lines = make_dry_run("test-fast", f"JUNIT_DIR={junit}", "PYTEST_ARGS=-k probe")
    fast = tiers(lines)
    assert [name for name, _ in fast] == ["lint"]
    assert fast[0][1][:4] == ["-x", "tests/test_lint.py", "--deselect", "tests/test_lint.py::test_mypy_finds_nothing"]
    recipe = " ".join(lines).replace("\\ ", " ")  # its continued lines, joined
    assert recipe.count("scripts/affected_tests.py") == 1
    words = shlex.split(recipe.split("scripts/affected_tests.py", 1)[1])
    assert words == ["--run", "--tier", "programs", "--tier", "orchestrator", "--jobs", "auto",
                     "--junit-dir", str(junit), "--", "-k", "probe"]
    every = " ".join(make_dry_run("test-fast", "ALL=1", "BASE=v1", "JOBS=0"))
    assert "--jobs 0" in every and "--all" in every and "--base v1" in every
    assert not any("-m" in args for _, args in run)
    # The programs, orchestrator and ops tiers spread over the cores (pytest-xdist), the engine tier
    # over two workers, a test file each; JOBS=0 keeps every tier in one process.
    parallel = {name: args[args.index("-n") + 1] for name, args in run if "-n" in args}
    assert parallel == {"programs": "auto", "orchestrator": "auto", "ops": "auto", "engine": "2"}
    engine = dict(run)["engine"]
    assert engine[engine.index("--dist") + 1] == "loadfile"
    serial = tiers(make_dry_run("test", "JOBS=0", f"JUNIT_DIR={junit}"))
    assert {name: args[args.index("-n") + 1] for name, args in serial if "-n" in args} == \
        {"programs": "0", "orchestrator": "0", "ops": "0", "engine": "0"}
    # Without JUNIT_DIR no tier writes JUnit.
    assert not any(a.startswith("--junitxml") for _, args in tiers(make_dry_run("test")) for a in args)


def test_the_tiers_together_cover_every_test_file(tmp_path: Path) -> None:
    paths = [REPO / a for _, args in tiers(make_dry_run("test", f"JUNIT_DIR={tmp_path}"))
             for a in args if a.startswith("tests")]
    files = sorted((REPO / "tests").rglob("test_*.py"))
    assert files
    uncovered = [f.relative_to(REPO) for f in files if not any(f == p or p in f.parents for p in paths)]
    assert uncovered == []
    covered_twice = [f.relative_to(REPO) for f in files if sum(f == p or p in f.parents for p in paths) > 1]
    assert covered_twice == []


def test_a_tier_with_no_test_selected_does_not_stop_the_run() -> None:
    text = (REPO / "Makefile").read_text()
    assert "[ $$status = 0 ] || [ $$status = 5 ] || exit $$status" in text


def test_ci_run_collects_every_tiers_junit_and_keeps_the_failure_status() -> None:
    text = (REPO / ".ci" / "run").read_text()
    assert 'make test VENV="$venv" JUNIT_DIR="$results"' in text
    assert "results=${JUNIT_DIR:-.ci-results}" in text and 'rm -rf "$venv" "$results"' in text
    assert '.ci/junit_summary.py "$results"' in text
    assert 'if [ "$status" = 0 ] && [ "$summary" != 0 ]; then status=$summary; fi' in text
    assert text.rstrip().endswith('exit "$status"')
    assert ".ci-results/" in (REPO / ".gitignore").read_text().splitlines()


def _junit(path: Path, cases: list[tuple[str, str]]) -> None:
    body = []
    for classname, outcome in cases:
        inner = {"passed": "", "failed": "<failure message='boom'>trace</failure>",
                 "error": "<error message='fixture'>trace</error>", "skipped": "<skipped message='no CLI'/>"}[outcome]
        body.append(f'<testcase classname="{classname}" name="t{len(body)}" time="0.1">{inner}</testcase>')
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="{len(cases)}">'
                    + "".join(body) + "</testsuite></testsuites>")


def summary(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / ".ci" / "junit_summary.py"), str(directory)],
                          capture_output=True, text=True, timeout=60)


def test_the_ci_summary_counts_every_tier(tmp_path: Path) -> None:
    _junit(tmp_path / "orchestrator.xml", [("tests.orchestrator.test_graph", "passed")] * 3)
    _junit(tmp_path / "engine.xml", [("tests.engine.test_up_region", "passed"), ("tests.engine.test_drift", "skipped")])
    _junit(tmp_path / "drill.xml", [("tests.drill.test_drill_units", "passed")])
    proc = summary(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["engine tier: 1 tests ran, 1 skipped",
                                        "tiers: drill, engine, orchestrator",
                                        "total: 5 passed, 0 failed, 1 skipped"]


@pytest.mark.parametrize("outcome", ["failed", "error"])
def test_the_ci_summary_fails_on_a_failure_in_any_tier(tmp_path: Path, outcome: str) -> None:
    _junit(tmp_path / "programs.xml", [("tests.programs.test_dns", "passed")] * 4)
    ops = "tests.ops.test_ops_lifecycle"
    _junit(tmp_path / "ops.xml", [(ops, "passed"), (ops, outcome)])
    proc = summary(tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == "total: 5 passed, 1 failed, 0 skipped"


def test_the_ci_summary_fails_when_no_test_ran(tmp_path: Path) -> None:
    proc = summary(tmp_path)  # no JUnit file at all
    assert proc.returncode == 1 and "no test tier ran" in proc.stdout
    _junit(tmp_path / "lint.xml", [])
    _junit(tmp_path / "engine.xml", [("tests.engine.test_up_region", "skipped")])
    proc = summary(tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-2:] == ["total: 0 passed, 0 failed, 1 skipped", "no test ran"]


def test_an_unknown_installer_is_one_line_exit_2_and_nothing_is_created(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    proc = subprocess.run([str(SETUP), str(venv), "", str(tmp_path / "stamp")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "INSTALLER": "conda"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "set-up: INSTALLER=conda is not one of auto, uv, pip\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_uv_path_installs_the_pinned_runtime_offline_and_plans(tmp_path: Path) -> None:
    """The real uv path, from uv's cache (offline: the suite runs without a registry): what `make plan`
    installs is the pinned runtime set and nothing of the test extra, set-up talks on stderr only, and
    the plan's stdout is the JSON document alone."""
    version = pins()["uv"]
    tools = Path(os.environ.get("ORCHESTRATE_TOOLS", Path.home() / ".cache" / "orchestrate-tools"))
    if not (tools / f"uv-{version}" / "bin" / "uv").is_file():
        pytest.skip(f"uv {version} is not installed under {tools} (this machine set up with INSTALLER=pip)")
    venv = tmp_path / "venv"
    env = {**{k: v for k, v in os.environ.items() if k not in MAKE_ENV}, "INSTALLER": "uv", "UV_OFFLINE": "1"}
    proc = subprocess.run([str(SETUP), str(venv), "", str(venv / ".runtime")], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""
    talk = [line for line in proc.stderr.splitlines() if line.startswith("set-up")]
    assert [line.split("]")[0] for line in talk[:3]] == ["set-up [1/3", "set-up [2/3", "set-up [3/3"], talk
    assert talk[-1].startswith("set-up done in ")
    assert (venv / ".installer").read_text() == f"uv {version}\n"

    pinned = pins()
    found = installed(str(venv / "bin" / "python"))
    assert {n: v for n, v in found.items() if n != PROJECT and pinned.get(n) != v} == {}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert runtime <= set(found)
    assert not {"pytest", "moto", "ruff", "mypy", "awsiotsdk", "pip", "setuptools"} & set(found)

    plan = subprocess.run(["make", "--no-print-directory", "plan", f"VENV={venv}"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={k: v for k, v in env.items() if not k.startswith("PULUMI_")})
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert plan.stderr == ""  # set up already: make plan had nothing to install
    assert json.loads(plan.stdout)["env"] == "dev"
    assert shutil.which("orchestrate", path=str(venv / "bin"))


def test_every_pin_carries_the_hashes_of_its_files() -> None:
    """A file the index serves for a pin is installed only when its sha256 is listed (uv and pip
    both refuse it otherwise: the tamper test below, and CONTRIBUTING.md); every pin has at least one."""
    for name, version, hashes in pinned_lines():
        assert hashes, f"{name}=={version} has no --hash (run scripts/hash_constraints.py)"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
        assert len(set(hashes)) == len(hashes), f"{name}: a hash listed twice"


def _copy_project(into: Path) -> Path:
    """What an editable install of the project reads (sources, metadata, set-up), not the venvs."""
    skip = shutil.ignore_patterns(".git", ".venv*", ".ci-results", ".orchestrate", "__pycache__", "*.egg-info",
                                  ".mypy_cache", ".ruff_cache", ".pytest_cache", "x", "tests", "bench", "docs")
    shutil.copytree(REPO, into, ignore=skip, symlinks=True)
    return into


@pytest.mark.slow
def test_the_uv_path_refuses_a_file_whose_hash_is_not_listed(tmp_path: Path) -> None:
    """The real set-up script, uv from its cache (offline), with one runtime dependency's hashes
    replaced: the install fails naming the package and the venv gets no project."""
    version = pins()["uv"]
    tools = Path(os.environ.get("ORCHESTRATE_TOOLS", Path.home() / ".cache" / "orchestrate-tools"))
    if not (tools / f"uv-{version}" / "bin" / "uv").is_file():
        pytest.skip(f"uv {version} is not installed under {tools} (this machine set up with INSTALLER=pip)")
    project = _copy_project(tmp_path / "project")
    constraints = project / "constraints.txt"
    text = constraints.read_text()
    (_, click_version, click_hashes) = next(p for p in pinned_lines() if canonicalize_name(p[0]) == "click")
    for digest in click_hashes:
        text = text.replace(digest, "0" * 64)
    constraints.write_text(text)
    venv = tmp_path / "venv"
    env = {**{k: v for k, v in os.environ.items() if k not in MAKE_ENV}, "INSTALLER": "uv", "UV_OFFLINE": "1"}
    proc = subprocess.run([str(project / "scripts" / "setup_venv.sh"), str(venv), "", str(venv / ".runtime")],
                          cwd=project, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "click" in proc.stderr and "0" * 64 in proc.stderr, proc.stderr[-2000:]
    assert not (venv / ".runtime").exists()
    assert "click" not in installed(str(venv / "bin" / "python"))
