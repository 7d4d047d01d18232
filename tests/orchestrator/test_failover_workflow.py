"""failover.yml: a lifecycle transition from CI (the lifecycle role, prod's approval) that opens a
pull request with the topology change (docs/architecture.md, "Who is primary"). The checks every
workflow gets (actionlint, SHA pins, secrets, pipefail) run in test_workflows.py."""

from __future__ import annotations

import json

from tests.orchestrator.test_workflows import FAILOVER, load, run_lines, steps_using


def test_it_is_dispatched_with_environment_action_and_region() -> None:
    doc = load(FAILOVER)
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == ["dev", "prod"]
    assert inputs["action"]["options"] == ["promote", "failover", "failback"]
    assert inputs["region"]["type"] == "string"
    assert doc["permissions"] == {} and doc["defaults"]["run"]["shell"] == "bash"
    assert doc["concurrency"] == {"group": "lifecycle-${{ inputs.environment }}", "cancel-in-progress": False}


def test_the_transition_runs_behind_the_environments_approval_with_the_lifecycle_role() -> None:
    job = load(FAILOVER)["jobs"]["transition"]
    assert job["environment"] == "${{ inputs.environment }}"  # prod: its required reviewers
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_LIFECYCLE_ROLE_ARN }}"
    runs = run_lines(job)
    for command in ('orchestrate promote-secondary --env "$ENV_NAME" --region "$REGION"',
                    'orchestrate failover --env "$ENV_NAME" --to "$REGION" --yes',
                    'orchestrate failback --env "$ENV_NAME" ${REGION:+--to "$REGION"} --yes'):
        assert command in runs, command
    assert "${{" not in runs  # inputs reach the shell as environment variables, never spliced in


def test_the_topology_change_becomes_a_pull_request_from_a_job_without_aws() -> None:
    jobs = load(FAILOVER)["jobs"]
    topology = next(s for s in jobs["transition"]["steps"] if s.get("id") == "topology")
    assert topology["if"] == "success() || failure()"  # a failed promotion may have recorded a member
    pr = jobs["pull-request"]
    assert pr["needs"] == "transition" and "needs.transition.outputs.changed == 'true'" in pr["if"]
    assert pr["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert not steps_using(pr, "aws-actions/configure-aws-credentials") and "secrets." not in json.dumps(pr)
    runs = run_lines(pr)
    assert 'git push origin "$branch"' in runs and "gh pr create" in runs
    assert pr["env"]["GH_TOKEN"] == "${{ github.token }}"
