"""The whole suite: hermetic against the machine that runs it (see tests/runner.py).

Runs at import, before any test module is collected, so subprocesses the tests start (the
orchestrate CLI, the drill's world, the Pulumi engine) do not inherit a runner's CI=true either.
"""

from __future__ import annotations

from tests.runner import hide_runner_context

hide_runner_context()

import os  # noqa: E402

# The suite never downloads the Pulumi CLI (`orchestrator.engine.pulumi.ensure_pulumi_cli`): a
# machine without one meets the same refusal a newcomer offline would; tests of the download
# decision stub `PulumiCommand.install` and lift this themselves.
os.environ["ORCHESTRATE_PULUMI_INSTALL"] = "0"
