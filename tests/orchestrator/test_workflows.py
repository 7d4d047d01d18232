"""The GitHub workflows users copy: valid for actionlint, least privilege, one run per PR and env.

actionlint is built from the Go module proxy by tests/tools/build_actionlint.sh (cached per
machine). Without Go the lint test is skipped with the reason printed, except on CI (tests/runner.py),
where a missing linter is a failure: the workflows must never go unchecked there.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import runner

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
PREVIEW = WORKFLOWS / "preview.yml"
APPLY = WORKFLOWS / "apply.yml"
BACKUP = WORKFLOWS / "backup.yml"
DRIFT = WORKFLOWS / "drift.yml"
SYNC = WORKFLOWS / "registry-sync.yml"
FAILOVER = WORKFLOWS / "failover.yml"
TEST = WORKFLOWS / "test.yml"
ALL = (PREVIEW, APPLY, BACKUP, DRIFT, SYNC, FAILOVER, TEST)
BUILD = REPO / "tests" / "tools" / "build_actionlint.sh"
CONSTRAINTS = REPO / "constraints.txt"
PATHS = {"programs/**", "stacks/**", "orchestrator/**", "Pulumi.yaml", "pyproject.toml", "constraints.txt"}
# Node 24 majors (GitHub runs no Node 20 action any more)
MAJORS = {"actions/checkout": 6, "actions/setup-python": 6, "pulumi/actions": 7,
          "aws-actions/configure-aws-credentials": 6}


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as True
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).split("@")[0] == action]


def run_lines(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in job["steps"])


def on_ci() -> bool:
    return runner.ON_CI


def build_actionlint(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=600,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        pytest.fail("building actionlint took more than 10 minutes")


def unavailable(reason: str) -> None:
    """Skip with the reason printed, or fail on CI where the workflows must always be linted."""
    if on_ci():
        pytest.fail(f"{reason} (on CI the workflows must always be linted)")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def actionlint() -> str:
    proc = build_actionlint()
    if proc.returncode == 3:
        unavailable(f"actionlint not available: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"build_actionlint.sh failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


def test_without_go_the_build_says_so_with_exit_code_3(tmp_path: Path) -> None:
    proc = build_actionlint({"ACTIONLINT_GO": str(tmp_path / "no-go"),
                             "ORCHESTRATE_TOOLS_DIR": str(tmp_path)})
    assert proc.returncode == 3 and "no Go toolchain" in proc.stderr


@pytest.mark.parametrize("ci, outcome", [(True, "failed"), (False, "skipped")])
def test_a_missing_linter_skips_locally_but_fails_on_ci(monkeypatch: pytest.MonkeyPatch, ci: bool,
                                                       outcome: str) -> None:
    monkeypatch.setattr(runner, "ON_CI", ci)
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as info:
        unavailable("actionlint not available: no Go")
    assert (outcome == "failed") == isinstance(info.value, pytest.fail.Exception)


def test_workflows_pass_actionlint(actionlint: str) -> None:
    proc = subprocess.run([actionlint, "-no-color", "-oneline", *map(str, ALL)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    findings = f"actionlint findings:\n{proc.stdout}{proc.stderr}"
    assert proc.returncode == 0 and not proc.stdout.strip(), findings


def test_actionlint_catches_a_broken_workflow(actionlint: str, tmp_path: Path) -> None:
    """The lint test would notice a mistake (it is not passing vacuously)."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    text = PREVIEW.read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    bogus: 1", 1)
    broken.write_text(text)
    proc = subprocess.run([actionlint, "-no-color", "-oneline", str(broken)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode != 0 and "bogus" in proc.stdout


def test_preview_runs_on_every_pull_request_and_merge_group_for_every_environment() -> None:
    doc = load(PREVIEW)
    # no workflow-level paths filter: a skipped workflow leaves a required check pending forever
    assert set(doc["on"]) == {"pull_request", "merge_group"}
    assert not (doc["on"]["pull_request"] or {}).get("paths")
    job = doc["jobs"]["preview"]
    assert job["strategy"]["matrix"]["env"] == ["dev", "prod"]
    # forks get no secrets or OIDC token: skipped rather than failing; merge-queue groups run
    assert "head.repo.full_name == github.repository" in job["if"]
    assert "github.event_name == 'merge_group'" in job["if"]


def test_preview_filters_infrastructure_paths_inside_the_job() -> None:
    import re

    job = load(PREVIEW)["jobs"]["preview"]
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[1]["id"] == "changes"
    changes = steps[1]
    assert changes["env"]["BASE"] == \
        "${{ github.event.pull_request.base.sha || github.event.merge_group.base_sha }}"
    pattern = re.search(r"grep -qE '([^']+)'", changes["run"]).group(1)
    matcher = re.compile(pattern)
    # every path the old workflow filter named still triggers a preview; docs do not
    for changed in ("programs/region.py", "stacks/dev.topology.yaml", "orchestrator/cli/main.py",
                    "Pulumi.yaml", "pyproject.toml", "constraints.txt"):
        assert matcher.search(changed), changed
    for changed in ("README.md", "docs/runbooks/failover.md", ".github/workflows/test.yml", "tests/x.py"):
        assert not matcher.search(changed), changed
    # every later step runs only when infrastructure changed (or is the summary of what ran)
    for step in steps[2:]:
        condition = str(step.get("if", ""))
        assert "steps.changes.outputs.infra == 'true'" in condition or "hashFiles(" in condition \
            or "steps.preview.outcome" in condition, step.get("name", step.get("uses"))


def test_a_summary_check_always_reports_and_fails_on_a_failed_preview() -> None:
    jobs = load(PREVIEW)["jobs"]
    summary = jobs["summary"]
    assert summary["name"] == "preview summary"
    assert summary["if"] == "always()" and summary["needs"] == "preview"
    assert summary["permissions"] == {}
    script = run_lines(summary)
    assert "needs.preview.result" in summary["steps"][0]["env"]["RESULT"]
    for result, code in (("success", 0), ("skipped", 0), ("failure", 1), ("cancelled", 1)):
        proc = subprocess.run(["bash", "-c", script.replace(">> \"$GITHUB_STEP_SUMMARY\"", ">/dev/null")],
                              env={**os.environ, "RESULT": result}, capture_output=True, text=True)
        assert proc.returncode == code, result


def test_preview_and_drift_write_their_markdown_to_the_job_summary() -> None:
    preview = load(PREVIEW)["jobs"]["preview"]
    assert 'cat comment.md >> "$GITHUB_STEP_SUMMARY"' in run_lines(preview)
    post = next(s for s in preview["steps"] if "comment post" in str(s.get("run", "")))
    assert "github.event_name == 'pull_request'" in post["if"]  # a merge group has no PR to comment on
    (drift,) = load(DRIFT)["jobs"].values()
    assert 'cat drift.md >> "$GITHUB_STEP_SUMMARY"' in run_lines(drift)


def test_preview_runs_readiness_without_blocking_and_adds_it_to_the_comment_and_summary(tmp_path: Path) -> None:
    job = load(PREVIEW)["jobs"]["preview"]
    names = [s.get("name") for s in job["steps"]]
    (ready,) = [s for s in job["steps"] if s.get("id") == "readiness"]
    assert ready["run"] == 'orchestrate readiness --env "$ENV_NAME" --json --output readiness.md > readiness.json'
    assert ready["continue-on-error"] is True  # NOT READY (exit 1) never fails the preview
    assert ready["if"] == "steps.changes.outputs.infra == 'true'"
    assert ready["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert names.index("Preview") < names.index("Readiness") < names.index("Post the preview comment")
    # "Fail when the preview failed" looks at the preview only, never at readiness
    fail = next(s for s in job["steps"] if s.get("name") == "Fail when the preview failed")
    assert "readiness" not in json.dumps(fail)
    summary = next(s for s in job["steps"] if s.get("name") == "Readiness job summary")
    assert summary["run"] == 'cat readiness.md >> "$GITHUB_STEP_SUMMARY"'
    assert "!cancelled()" in summary["if"] and "hashFiles('readiness.md')" in summary["if"]
    # the post step passes --readiness exactly when the readiness step wrote a report
    post = next(s for s in job["steps"] if s.get("name") == "Post the preview comment")
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "orchestrate"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > args.txt\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "ENV_NAME": "dev",
           "REPO": "o/n", "PR": "7"}
    for content, expected in (("", []), ('{"kind": "readiness"}', ["--readiness", "readiness.json"])):
        (tmp_path / "readiness.json").write_text(content)
        proc = subprocess.run(["bash", "-e", "-c", post["run"]], cwd=tmp_path, env=env, capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        args = (tmp_path / "args.txt").read_text().split("\n")[:-1]
        assert args == ["comment", "post", "--env", "dev", "--file", "comment.md", "--repo", "o/n", "--pr", "7",
                        *expected]


def test_a_test_workflow_lints_and_runs_make_test_on_every_change() -> None:
    doc = load(TEST)
    assert set(doc["on"]) == {"pull_request", "merge_group", "push"}
    assert not (doc["on"]["pull_request"] or {}).get("paths")
    assert doc["permissions"] == {}
    (job,) = doc["jobs"].values()
    assert job["permissions"] == {"contents": "read"}
    runs = run_lines(job)
    assert "make lint" in runs and "make test" in runs and "mypy" in runs
    assert "secrets." not in json.dumps(doc)
    (pulumi,) = steps_using(job, "pulumi/actions")
    assert pulumi["with"]["pulumi-version"] == "${{ steps.versions.outputs.pulumi }}"


def test_preview_has_least_privilege_permissions() -> None:
    doc = load(PREVIEW)
    assert doc["permissions"] == {}
    job = doc["jobs"]["preview"]
    assert job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}


def test_preview_concurrency_is_per_pr_and_environment_and_cancels_stale_runs() -> None:
    job = load(PREVIEW)["jobs"]["preview"]
    group = job["concurrency"]["group"]
    assert "github.event.pull_request.number" in group and "matrix.env" in group
    assert job["concurrency"]["cancel-in-progress"] is True


def test_preview_steps_render_then_post_the_sticky_comment() -> None:
    job = load(PREVIEW)["jobs"]["preview"]
    uses = [str(s.get("uses", "")).split("@")[0] for s in job["steps"] if s.get("uses")]
    assert uses == ["actions/checkout", "actions/setup-python", "pulumi/actions",
                    "aws-actions/configure-aws-credentials"]
    (checkout,) = steps_using(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0  # the base branch's topology, for before/after
    (pulumi,) = steps_using(job, "pulumi/actions")
    assert "command" not in pulumi.get("with", {})  # install only
    # pinned, to the version constraints.txt pins the SDK to (test_one_constraints_file_...)
    assert pulumi["with"]["pulumi-version"] == "${{ steps.versions.outputs.pulumi }}"
    (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    runs = run_lines(job)
    assert 'scripts/setup_venv.sh .venv "" .venv/.runtime' in runs
    assert 'orchestrate preview --env "$ENV_NAME" --all --format markdown --output comment.md' in runs
    assert 'orchestrate comment post --env "$ENV_NAME" --file comment.md --repo "$REPO" --pr "$PR"' in runs
    post = next(s for s in job["steps"] if "comment post" in str(s.get("run", "")))
    assert post["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert post["env"]["PR"] == "${{ github.event.pull_request.number }}"


def test_apply_runs_on_main_per_environment_behind_approval() -> None:
    doc = load(APPLY)
    assert doc["on"]["push"]["branches"] == ["main"]
    assert set(doc["on"]["push"]["paths"]) == PATHS
    assert doc["permissions"] == {}
    jobs = {name: job for name, job in doc["jobs"].items() if name.startswith("apply-")}
    assert set(doc["jobs"]) == {"preview-passed", "preview-prod", *jobs}
    assert [j["environment"] for j in jobs.values()] == ["dev", "prod"]
    assert jobs["apply-dev"]["needs"] == "preview-passed"  # nothing applies before the gate
    # prod only after dev applied, and after a fresh prod preview the approver reads in the run
    assert jobs["apply-prod"]["needs"] == ["apply-dev", "preview-prod"]
    fresh = doc["jobs"]["preview-prod"]
    assert fresh["needs"] == "apply-dev" and fresh["environment"] == "preview-prod"  # read-only, no approval
    assert fresh["permissions"] == {"contents": "read", "id-token": "write"}
    (aws,) = steps_using(fresh, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    assert 'orchestrate preview --env "$ENV_NAME" --all --format markdown --output preview.md' in run_lines(fresh)
    assert 'cat preview.md >> "$GITHUB_STEP_SUMMARY"' in run_lines(fresh)
    assert "orchestrate up" not in run_lines(fresh)
    for job in jobs.values():
        env = job["environment"]
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        assert job["concurrency"] == {"group": f"apply-{env}", "cancel-in-progress": False}
        assert job["env"]["ENV_NAME"] == env
        assert 'orchestrate up --all --env "$ENV_NAME"' in run_lines(job)
        assert all("--yes" in line for line in run_lines(job).splitlines() if "orchestrate up" in line)
        # the result, failed or not, in the job summary (up appends its own markdown)
        assert all('--summary "$GITHUB_STEP_SUMMARY"' in line
                   for line in run_lines(job).splitlines() if "orchestrate up" in line)
        (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
        assert aws["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_every_action_is_pinned_to_at_least_a_major_version(path: Path) -> None:
    for job in load(path)["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                ref = step["uses"].split("@", 1)
                assert len(ref) == 2 and ref[1] and ref[1] not in ("main", "master", "latest"), step["uses"]


def test_backup_runs_daily_with_least_privilege() -> None:
    import yaml

    doc = yaml.safe_load(BACKUP.read_text())
    triggers = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads `on` as a boolean
    assert triggers["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]  # every day
    assert doc["permissions"] == {}
    job = doc["jobs"]["backup"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["concurrency"]["cancel-in-progress"] is False
    assert any("orchestrate registry backup" in step.get("run", "") for step in job["steps"])
    assert job["env"]["ORCHESTRATE_BACKUP_SIGNING_KEY"].startswith("${{ vars.")  # backups are signed


# -- the structure issue 14 asked for ------------------------------------------------------------

@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_every_action_is_a_current_major_pinned_by_commit_sha_with_its_version(path: Path) -> None:
    import re

    uses = re.findall(r"^\s*(?:- )?uses: (\S+)@(\S+)(.*)$", path.read_text(), re.M)
    assert uses
    for action, ref, comment in uses:
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{action}@{ref} is not pinned by commit SHA"
        version = re.fullmatch(r"\s+# v(\d+)(?:\.\d+){0,2}", comment)
        assert version, f"{action}@{ref}: no '# vX.Y.Z' comment"
        assert int(version.group(1)) == MAJORS[action], f"{action}: v{version.group(1)} is not the current major"


def _aws_jobs() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.stem}:{name}", job) for path in ALL for name, job in load(path)["jobs"].items()
            if steps_using(job, "aws-actions/configure-aws-credentials")]


@pytest.mark.parametrize("name, job", _aws_jobs(), ids=lambda x: x if isinstance(x, str) else "")
def test_aws_credentials_last_as_long_as_the_job_may_run(name: str, job: dict[str, Any]) -> None:
    (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
    assert int(aws["with"]["role-duration-seconds"]) >= int(job["timeout-minutes"]) * 60, name


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_secrets_reach_only_the_steps_that_run_orchestrate(path: Path) -> None:
    doc = load(path)
    assert "secrets." not in json.dumps(doc.get("env", {}))
    for name, job in doc["jobs"].items():
        assert "secrets." not in json.dumps(job.get("env", {})), f"{name}: a secret in job-level env"
        for step in job["steps"]:
            if "secrets." in json.dumps(step):
                assert "uses" not in step and "orchestrate " in step["run"], f"{name}: {step}"


def test_one_constraints_file_pins_what_make_and_every_workflow_install() -> None:
    text = CONSTRAINTS.read_text().replace("\\\n", " ")  # one logical line per pin, hashes included
    pins = dict(line.split(" ", 1)[0].split("==", 1) for line in text.splitlines()
                if line and not line.startswith("#"))
    for package in ("pulumi", "pulumi_aws", "pulumi_command", "boto3", "click", "PyYAML"):
        assert package in pins and pins[package].count(".") >= 2, package
    setup = (REPO / "scripts" / "setup_venv.sh").read_text()  # make's set-up, with uv or pip
    assert 'constraints=$PWD/constraints.txt' in setup
    # uv: the project and its build backend from the hashed file; pip: the three passes, each with
    # the hashed file for the build backend, the install itself with --require-hashes
    assert setup.count('--constraint "$constraints"') == 1
    assert setup.count('--build-constraint "$constraints"') == 3
    code = "\n".join(line for line in setup.splitlines() if not line.lstrip().startswith("#"))
    assert code.count("--require-hashes") == 3  # uv's own install, the pinned pip, the project's set
    install = 'scripts/setup_venv.sh .venv "" .venv/.runtime'
    for path in ALL:
        for job in load(path)["jobs"].values():
            runs = run_lines(job)
            assert "pip install" not in runs, path.name  # every workflow installs as make does
            if install not in runs:
                continue
            if not steps_using(job, "pulumi/actions"):  # a job that runs no stack needs no Pulumi CLI
                continue
            assert "sed -n 's/^pulumi==\\([0-9.]*\\).*/\\1/p' constraints.txt" in runs, path.name
            (pulumi,) = steps_using(job, "pulumi/actions")
            assert pulumi["with"]["pulumi-version"] == "${{ steps.versions.outputs.pulumi }}"


def test_previews_and_drift_run_in_read_only_environments_backups_in_their_own() -> None:
    preview = load(PREVIEW)["jobs"]["preview"]
    assert preview["environment"] == "preview-${{ matrix.env }}"
    (drift,) = load(DRIFT)["jobs"].values()
    assert drift["environment"] == "preview-${{ matrix.env }}"
    (aws,) = steps_using(drift, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    backup = load(BACKUP)["jobs"]["backup"]
    assert backup["environment"] == "backup-${{ matrix.env }}"  # unreviewed: never waits for a human
    (aws,) = steps_using(backup, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_BACKUP_ROLE_ARN }}"
    # the comment names the commit that was previewed (HEAD, the merge commit), not the PR head
    assert "ORCHESTRATE_COMMIT" not in PREVIEW.read_text()


def test_apply_is_gated_on_the_merged_prs_previews_and_recovers_after_a_cancel() -> None:
    jobs = load(APPLY)["jobs"]
    gate = jobs["preview-passed"]
    assert gate["permissions"] == {"contents": "read", "pull-requests": "read", "checks": "read"}
    gate_run = run_lines(gate)
    assert "commits/$SHA/pulls" in gate_run and "check-runs?check_name=preview%20($env)" in gate_run
    assert "exit 1" in gate_run
    for env in ("dev", "prod"):
        (recover,) = [s for s in jobs[f"apply-{env}"]["steps"] if "orchestrate recover" in str(s.get("run", ""))]
        assert recover["if"] == "cancelled()"
        assert 'orchestrate recover --all --yes --env "$ENV_NAME"' in recover["run"]
        assert "--force" not in recover["run"]  # a lock held elsewhere is refused, never broken
        assert "GITHUB_STEP_SUMMARY" in recover["run"]


def test_drift_runs_nightly_and_keeps_one_issue_per_environment() -> None:
    doc = load(DRIFT)
    assert doc["on"]["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]
    assert doc["permissions"] == {}
    (job,) = doc["jobs"].values()
    assert job["strategy"]["matrix"]["env"] == ["dev", "prod"]
    assert job["permissions"] == {"contents": "read", "id-token": "write", "issues": "write"}
    runs = run_lines(job)
    assert 'orchestrate drift --env "$ENV_NAME" --all --format markdown --output drift.md' in runs
    assert "orchestrate comment issue" in runs and "--resolved" in runs


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_a_pipe_never_hides_a_failed_orchestrate(path: Path) -> None:
    """GitHub runs `run:` with `bash -e` and no pipefail unless a shell is named: `orchestrate … | tee`
    would then pass when orchestrate failed."""
    doc = load(path)
    for name, job in doc["jobs"].items():
        shell = (job.get("defaults") or doc.get("defaults") or {}).get("run", {}).get("shell")
        for step in job["steps"]:
            piped = any("orchestrate " in part for part in str(step.get("run", "")).split("|")[:-1])
            if piped:
                assert (step.get("shell") or shell) == "bash", f"{path.name}:{name}: {step['run']}"


def test_registry_sync_runs_daily_and_fully_every_week_never_pruning() -> None:
    doc = load(SYNC)
    daily, weekly = (entry["cron"] for entry in doc["on"]["schedule"])
    assert daily.split()[2:] == ["*", "*", "*"] and weekly.split()[2:] == ["*", "*", "0"]
    assert doc["on"]["workflow_dispatch"]["inputs"]["full"]["type"] == "boolean"
    assert doc["permissions"] == {}
    (job,) = doc["jobs"].values()
    assert job["strategy"]["matrix"]["env"] == ["dev", "prod"]
    assert job["environment"] == "sync-${{ matrix.env }}"  # unreviewed: never waits for a human
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["concurrency"]["cancel-in-progress"] is False  # never kill a sync half way
    assert job["env"]["FULL"] == f"${{{{ github.event.schedule == '{weekly}' || inputs.full }}}}"
    runs = run_lines(job)
    assert '--all-secondaries' in runs
    # --full: large secondaries start their state machine; the others ("cli") are synced --full here
    assert "orchestrate registry reconcile --env \"$ENV_NAME\" --start --json" in runs
    assert 'select(.path == "cli")' in runs and '--to "$region" --full' in runs
    assert "--prune" not in runs and "--yes" not in runs  # deletions stay a person's decision
    (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_SYNC_ROLE_ARN }}"


FAKE_ORCHESTRATE = """#!/bin/bash
echo "$*" >> "$CALLS"
if [ "$2" = reconcile ]; then cat "$PLAN"; fi
if [ "$8" = "$FAILS" ]; then exit 1; fi
"""


@pytest.mark.parametrize("full", [True, False])
def test_registry_sync_full_starts_large_secondaries_machines_and_syncs_only_the_cli_ones(
        tmp_path: Path, full: bool) -> None:
    """The sync step run by bash as GitHub runs it (`bash -eo pipefail`), with a stand-in
    `orchestrate` answering `registry reconcile --start --json` as the command does: the secondaries
    reported "cli" are synced --full one by one, a failed one does not stop the next, the step fails."""
    import shutil

    if shutil.which("jq") is None:  # GitHub's ubuntu runners have jq
        pytest.fail("jq is needed to run the registry-sync step")
    (job,) = load(SYNC)["jobs"].values()
    (step,) = [s for s in job["steps"] if "registry sync" in str(s.get("run", ""))]
    (tmp_path / "step.sh").write_text(step["run"])
    fake = tmp_path / "bin" / "orchestrate"
    fake.parent.mkdir()
    fake.write_text(FAKE_ORCHESTRATE)
    fake.chmod(0o755)
    plan: dict[str, Any] = {"from": "eu-west-1", "cli_below": 200000, "reconciliations": [
        {"region": "eu-central-1", "path": "state-machine", "reason": "1000000 things >= 200000",
         "execution_arn": "arn:aws:states:eu-central-1:1:execution:iot-prod-reconcile-eu-central-1:full-x",
         "started": True, "status": "RUNNING", "things": 1000000},
        {"region": "eu-west-2", "path": "cli", "reason": "5 things < 200000", "execution_arn": None,
         "started": False, "status": None, "things": 5},
        {"region": "us-east-1", "path": "cli", "reason": "no replication function here", "execution_arn": None,
         "started": False, "status": None, "things": None}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}", "FULL": str(full).lower(), "ENV_NAME": "prod",
           "RUNNER_TEMP": str(tmp_path), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
           "CALLS": str(tmp_path / "calls"), "PLAN": str(tmp_path / "plan.json"), "FAILS": "eu-west-2"}
    got = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(tmp_path / "step.sh")],
                         env=env, capture_output=True, text=True, timeout=60)
    calls = (tmp_path / "calls").read_text().splitlines()
    if not full:
        assert (got.returncode, calls) == (0, ["registry sync --env prod --all-secondaries"])
        return
    assert got.returncode == 1, got.stderr
    assert calls == ["registry reconcile --env prod --start --json",
                     "registry sync --env prod --from eu-west-1 --to eu-west-2 --full",
                     "registry sync --env prod --from eu-west-1 --to us-east-1 --full"]
    summary = (tmp_path / "summary").read_text()
    assert f"eu-central-1: state-machine {plan['reconciliations'][0]['execution_arn']}" in summary


def test_dependabot_updates_actions_and_pip_weekly() -> None:
    doc = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    assert doc["version"] == 2
    updates = {u["package-ecosystem"]: u for u in doc["updates"]}
    assert set(updates) == {"github-actions", "pip"}
    for update in updates.values():
        assert update["directory"] == "/" and update["schedule"]["interval"] == "weekly"
    # the Pulumi SDK packages move together (constraints.txt's `pulumi==` also pins the CLI)
    assert "pulumi*" in updates["pip"]["groups"]["pulumi"]["patterns"]
