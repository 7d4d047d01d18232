"""The whole suite: hermetic against the machine that runs it (see tests/runner.py).

Runs at import, before any test module is collected, so subprocesses the tests start (the
orchestrate CLI, the drill's world, the Pulumi engine) do not inherit a runner's CI=true either.
"""

from __future__ import annotations

from tests.runner import hide_runner_context

hide_runner_context()
