"""The error family and the one place that maps it to exit codes (DESIGN.md, command contract).

0 success; 1 an operation failed; 2 bad input or config (nothing was touched);
3 a stack is locked by another update; 4 refused by a safety guard.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    LOCKED = 3
    REFUSED = 4


class OrchestrateError(Exception):
    """Base of every error the CLI turns into a one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.FAILED
    MAX_LINE = 600  # an error line is read by a person: a value echoed into it never floods the terminal

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and its hint on one line of at most MAX_LINE characters. When it must be cut, the
        message is cut and the hint (what to do next) is kept whole, up to half the line: a long path
        echoed into the message must not push the fix off the line."""
        message = " ".join(self.message.split())
        hint = " ".join(self.hint.split()) if self.hint else ""
        if len(hint) > self.MAX_LINE // 2:
            hint = hint[:self.MAX_LINE // 2 - 1] + "…"
        suffix = f" ({hint})" if hint else ""
        room = self.MAX_LINE - len(suffix)
        if len(message) > room:
            message = message[:room - 1] + "…"
        return message + suffix


class OperationFailed(OrchestrateError):
    """A stack operation or an AWS call failed after it started."""

    exit_code = ExitCode.FAILED


class InputRejected(OrchestrateError):
    """Bad input or configuration, found before anything was touched."""

    exit_code = ExitCode.BAD_INPUT


class StackLocked(OrchestrateError):
    """Another update holds the stack's lock: `stack`, who holds it and since when (ISO 8601),
    when the backend says so."""

    exit_code = ExitCode.LOCKED

    def __init__(self, message: str, *, stack: str, holder: str | None = None, hint: str | None = None,
                 since: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.stack = stack
        self.holder = holder
        self.since = since


class StateConflict(OrchestrateError):
    """Another run changed a run state document since this run read it: nothing was overwritten."""

    exit_code = ExitCode.LOCKED

    def __init__(self, key: str, location: str) -> None:
        super().__init__(f"run state {key} in {location} was changed by another run at the same time",
                         hint="nothing was overwritten; wait for the other run and re-run")
        self.key = key
        self.location = location


class LeaseHeld(OrchestrateError):
    """Another live run holds the lease of a run-state lock (a registry sync of one region pair):
    nothing was written; `holder` is "user@host (pid N)"."""

    exit_code = ExitCode.LOCKED

    def __init__(self, message: str, *, holder: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


class LeaseLost(StateConflict):
    """This run's lease was taken over (it had not renewed within the TTL): it must stop writing."""

    def __init__(self, key: str, location: str) -> None:
        super().__init__(key, location)
        self.message = (f"lease {key} in {location} was lost (not renewed in time, taken over by another run): "
                        "this run stopped")
        self.hint = "check what the other run did (orchestrate status), then re-run"


class GuardRefused(OrchestrateError):
    """A safety guard refused the operation; nothing was touched."""

    exit_code = ExitCode.REFUSED


class Reported(OrchestrateError):
    """The outcome was already rendered (a failed run report): leave with `exit_code`, print no more."""

    def __init__(self, exit_code: ExitCode, message: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ContractViolation(OperationFailed):
    """A stack output does not satisfy the wiring contract of its consumers."""
