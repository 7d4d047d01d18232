"""What the machine running the suite says about itself, read once before the suite hides it.

The suite must behave the same on a laptop and on a CI runner, so tests/conftest.py removes the
runner's own context (CI, GITHUB_*, a team's backend or secrets settings) from the environment
before any test runs: a test that wants `CI=true` sets it itself. Whether missing tools may be
skipped, though, depends on where the suite runs, so that is captured here first.
"""

from __future__ import annotations

import os

# The runner's context: variables the product reads to decide how to behave (CI refusals, the
# sticky comment's pull request, the backend and secrets provider, the environment and topology).
RUNNER_VARIABLES = (
    "CI",
    "PULUMI_BACKEND_URL",
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_ACCESS_TOKEN",
    "ORCHESTRATE_ENV",
    "ORCHESTRATE_CONFIG",
    "ORCHESTRATE_SECRETS_PROVIDER",
    "ORCHESTRATE_BACKUP_DEST",
    "ORCHESTRATE_BACKUP_SIGNING_KEY",
    "ORCHESTRATE_DNS_DRAIN_SECONDS",
    "ORCHESTRATE_COMMIT",
)
RUNNER_PREFIXES = ("GITHUB_",)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no")


# On CI (`.ci/run` sets ORCHESTRATE_BUILD_PULUMI=1; runners set CI=true) a missing tool is a
# failure, never a skip.
ON_CI = _truthy(os.environ.get("CI")) or os.environ.get("ORCHESTRATE_BUILD_PULUMI") == "1"


def hide_runner_context(environ: dict[str, str] | None = None) -> list[str]:
    """Remove the runner's context from `environ` (os.environ by default); returns what it removed."""
    env = os.environ if environ is None else environ
    removed = [k for k in list(env) if k in RUNNER_VARIABLES or k.startswith(RUNNER_PREFIXES)]
    for key in removed:
        del env[key]
    return removed
