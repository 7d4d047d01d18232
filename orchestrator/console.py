"""Output goes through an injected console, never bare `print`.

stdout carries results (text or exactly one JSON document with --json); stderr carries progress,
notices and errors. Tests inject their own writers. Every line and document written through
`result`, `document`, `info`, `debug` and `error` is scrubbed of secret shapes and values
(`orchestrator.scrub`): the last line of defence for a message that echoed one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Writer = Callable[[str], None]


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


class Console:
    # A plain class, not a dataclass: this module is on the path of `orchestrate --help`.
    def __init__(self, out: Writer = _stdout, err: Writer = _stderr, verbose: bool = False,
                 json_mode: bool = False) -> None:
        self.out, self.err, self.verbose, self.json_mode = out, err, verbose, json_mode
        self._scrubber: Any = None

    def _scrub(self, text: str) -> str:
        if self._scrubber is None:
            from orchestrator.scrub import Scrubber  # deferred: not on the path of `--help`

            self._scrubber = Scrubber()
        return str(self._scrubber(text))

    def result(self, text: str) -> None:
        """A result line for humans (suppressed in --json mode, where only the document goes out)."""
        if not self.json_mode:
            text = self._scrub(text)
            self.out(text if text.endswith("\n") else text + "\n")

    def document(self, obj: Any) -> None:
        """The one JSON document of a --json run."""
        import json

        self._scrub("")  # makes the scrubber
        clean = self._scrubber.data(json.loads(json.dumps(obj, default=str)))  # every string, keys too
        self.out(json.dumps(clean, indent=2, sort_keys=False) + "\n")

    def info(self, text: str) -> None:
        self.err(self._scrub(text) + "\n")

    def debug(self, text: str) -> None:
        if self.verbose:
            self.err(self._scrub(text) + "\n")

    def error(self, text: str) -> None:
        self.err(f"error: {self._scrub(text)}\n")
