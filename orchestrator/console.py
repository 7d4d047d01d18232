"""Output goes through an injected console, never bare `print`.

stdout carries results (text or exactly one JSON document with --json); stderr carries progress,
notices and errors. Tests inject their own writers. Every line and document written through
`result`, `document`, `info`, `debug` and `error` is scrubbed of secret shapes and values
(`orchestrator.scrub`): the last line of defence for a message that echoed one.

Every JSON document has one envelope (docs/json.md): `kind` (the command, e.g. "status",
"registry-sync"), `version` (JSON_VERSION), `ok` (true exactly when the exit code is 0) and
`error` (null, or {code, message, exit_code}), then the command's own keys at the top level.
A command hands its payload to `Console.document`; the root command group emits it once, when
the outcome (exit code, error) is known, so a failed run and a refused one are documents too.

`Progress` is the one progress display for long work (registry sync and restore, `up`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

Writer = Callable[[str], None]

JSON_VERSION = 1
ENVELOPE_KEYS = ("kind", "version", "ok", "error")
# the error codes of the envelope, by exit code (DESIGN.md's contract; 130 is an interrupt)
ERROR_CODES = {1: "failed", 2: "bad-input", 3: "locked", 4: "refused", 130: "interrupted"}


def envelope(kind: str, payload: Mapping[str, Any] | None = None, *, exit_code: int = 0,
             message: str | None = None) -> dict[str, Any]:
    """`payload` in the envelope: kind, version, ok, error first, the payload's own keys after.

    A payload that names itself more precisely (`registry-sync-plan` under `registry-sync`) keeps
    its kind; a payload's `ok` is the envelope's (true exactly when the exit code is 0)."""
    body = dict(payload or {})
    own = body.pop("kind", None)
    if isinstance(own, str) and own.startswith(kind):
        kind = own
    for key in ENVELOPE_KEYS:
        body.pop(key, None)
    error = None if exit_code == 0 else {
        "code": ERROR_CODES.get(exit_code, "failed"),
        "message": message or _DEFAULT_MESSAGES.get(exit_code, "the command failed"),
        "exit_code": exit_code,
    }
    return {"kind": kind, "version": JSON_VERSION, "ok": exit_code == 0, "error": error, **body}


_DEFAULT_MESSAGES = {1: "the operation failed (details in this document)", 130: "interrupted"}


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
        self._document: Any = None  # the payload waiting for the outcome (`emit_document`)
        self._live: Progress | None = None  # a progress bar drawn on stderr, cleared around other lines

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

    def document(self, obj: Mapping[str, Any]) -> None:
        """The payload of the run's one JSON document; the root command emits it in the envelope
        (`emit_document`) once the exit code is known."""
        self._document = obj

    @property
    def has_document(self) -> bool:
        return self._document is not None

    def emit_document(self, kind: str, *, exit_code: int = 0, message: str | None = None) -> None:
        """Write the envelope (with the payload given to `document`, if any) to stdout, once."""
        payload, self._document = self._document, None
        self.out(self.dumps(envelope(kind, payload, exit_code=exit_code, message=message)))

    def dumps(self, doc: Any) -> str:
        """A JSON document as written: every string (keys too) scrubbed, indented, one trailing newline."""
        import json

        self._scrub("")  # makes the scrubber
        clean = self._scrubber.data(json.loads(json.dumps(doc, default=str)))
        return json.dumps(clean, indent=2, sort_keys=False) + "\n"

    def info(self, text: str) -> None:
        self._line(self._scrub(text) + "\n")

    def debug(self, text: str) -> None:
        if self.verbose:
            self._line(self._scrub(text) + "\n")

    def error(self, text: str) -> None:
        self._line(f"error: {self._scrub(text)}\n")

    def _line(self, text: str) -> None:
        """A line on stderr; a live progress bar is cleared first and drawn again after it."""
        live = self._live
        if live is not None:
            live.clear()
        self.err(text)
        if live is not None:
            live.redraw()

    def progress(self, label: str, *, unit: str = "", tty: bool | None = None, lines: bool = True) -> Progress:
        """A progress display for `label` (see `Progress`)."""
        return Progress(self, label, unit=unit, tty=tty, lines=lines)


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class Progress:
    """Progress of long work with a total: `update(done, total, detail)`, then `close()`.

    On a terminal (stderr a TTY, not --json, not CI) a bar is redrawn in place with the count, the
    total, the rate and the time left; other stderr lines clear it and draw it again after them.
    Under --json and on CI it is silent; elsewhere (stderr piped to a file) it writes a plain line
    at each tenth of the total (unless `lines=False`: work that already reports each item).
    Callable as `progress(done, total)`: the registry's Progress type."""

    WIDTH = 24
    MIN_INTERVAL = 0.1  # seconds between two redraws
    LINE_EVERY = 10.0  # seconds between two plain lines of work without a total yet (`activity`)

    def __init__(self, console: Console, label: str, *, unit: str = "", tty: bool | None = None,
                 lines: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.label, self.unit, self.clock = console, label, unit, clock
        if tty is None:
            isatty = getattr(sys.stderr, "isatty", None)
            tty = bool(isatty and isatty())
        quiet = console.json_mode or _on_ci()
        self.mode = "off" if quiet else "bar" if tty else "lines" if lines else "off"
        self.started = clock()
        self.done = self.total = 0
        self.detail = ""
        self._drawn = ""
        self._last_draw = -1.0
        self._tenth = -1
        self._lock = threading.RLock()  # `up` reports from one thread per stack
        self._activity: tuple[str, int] | None = None  # (what, requests) before the total is known
        self._last_line = clock()

    @property
    def live(self) -> bool:
        """True when the display is a bar on a terminal (callers may drop their own per-item lines)."""
        return self.mode == "bar"

    def __call__(self, done: int, total: int) -> None:
        self.update(done, total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def update(self, done: int, total: int | None = None, detail: str | None = None) -> None:
        with self._lock:
            self._update(done, total, detail)

    def activity(self, what: str, count: int) -> None:
        """Work whose total is not known yet (a sync reading both registries): `count` requests so
        far. On a terminal the line shows the count, the rate and the time spent; piped to a file, a
        line every LINE_EVERY seconds; nothing once `update` has given a total."""
        with self._lock:
            if self.mode == "off" or self.total > 0:
                return
            self._activity = (what, count)
            now = self.clock()
            if self.mode == "lines":
                if now - self._last_line >= self.LINE_EVERY:
                    self._last_line = now
                    self.console.err(self.text() + "\n")
                return
            if now - self._last_draw < self.MIN_INTERVAL:
                return
            self._last_draw = now
            self.console._live = self
            self.redraw()

    def _update(self, done: int, total: int | None, detail: str | None) -> None:
        if total and self.total <= 0 and self._activity is not None:
            self.started = self.clock()  # the rate and time left are those of this work, not of the reading
        if total is not None:
            self.total = total
        self.done = done
        if detail is not None:
            self.detail = detail
        if self.mode == "off" or self.total <= 0:
            return
        if self.mode == "lines":
            tenth = min(10, 10 * self.done // self.total)
            if tenth != self._tenth:
                self._tenth = tenth
                self.console.err(self.text() + "\n")
            return
        now = self.clock()
        if now - self._last_draw < self.MIN_INTERVAL and self.done < self.total:
            return
        self._last_draw = now
        self.console._live = self
        self.redraw()
        if self.done >= self.total:  # finished: the last state stays on its own line
            self.close()

    def text(self) -> str:
        """`label [####....] 12/40 things  3.1/s  ~9s left  detail`; before a total is known,
        `label: reading: 1,200 requests  150/s  8s`."""
        elapsed = self.clock() - self.started
        if self.total <= 0 and self._activity is not None:
            what, count = self._activity
            pace = f"  {count / elapsed:,.0f}/s" if elapsed > 0 else ""
            return f"{self.label}: {what}: {count:,} requests{pace}  {elapsed:.0f}s"
        total = max(self.total, 1)
        filled = min(self.WIDTH, self.WIDTH * self.done // total)
        unit = f" {self.unit}" if self.unit else ""
        parts = [f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total}{unit}"]
        if elapsed > 0 and self.done > 0:
            rate = self.done / elapsed
            parts.append(f"{rate:.1f}/s")
            if self.done < self.total:
                parts.append(f"~{(self.total - self.done) / rate:.0f}s left")
        if self.detail:
            parts.append(self.detail)
        return "  ".join(parts)

    def redraw(self) -> None:
        if self.mode != "bar" or (self.total <= 0 and self._activity is None):
            return
        self._drawn = self.text()
        self.console.err("\r\x1b[K" + self._drawn)

    def clear(self) -> None:
        if self._drawn:
            self.console.err("\r\x1b[K")

    def close(self) -> None:
        """End the display: the bar's last state stays on its own line."""
        if self.mode == "bar" and self._drawn:
            self.redraw()
            self.console.err("\n")
        self._drawn = ""
        if self.console._live is self:
            self.console._live = None
