"""The second line of defence against secrets in anything we print, write or post.

The first line is structural: secret config and outputs are masked where they are read (engine
events carry them as `[secret]`). `scrub` then removes known secret *shapes* from finished text,
in case a provider error message or a property value echoes one:

- AWS access key ids (AKIA…, ASIA… and the other long-term/temporary id prefixes);
- AWS secret access keys and session tokens that follow a recognisable label
  (`aws_secret_access_key = …`, `"SecretAccessKey": "…"`, `AWS_SESSION_TOKEN=…`);
- PEM private key blocks (RSA, EC, OPENSSH, ENCRYPTED, …), also when cut off before their END line;
- GitHub tokens: ghp_, gho_, ghu_, ghs_ (the Actions GITHUB_TOKEN), ghr_, github_pat_;
- the current values of the environment variables in SECRET_ENV_VARS, of every `ACTIONS_*_TOKEN`
  (the runner's own tokens), the contents of the file `PULUMI_CONFIG_PASSPHRASE_FILE` names, and
  `extra_secrets`.

Environment values shorter than MIN_ENV_SECRET characters are not scrubbed: a passphrase like
"dev" would otherwise erase every mention of the environment. Use real passphrases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
MIN_ENV_SECRET = 8
MIN_EXTRA_SECRET = 4
MAX_SECRET_FILE = 4096
PASSPHRASE_FILE_VAR = "PULUMI_CONFIG_PASSPHRASE_FILE"

SECRET_ENV_VARS = (
    "PULUMI_CONFIG_PASSPHRASE",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "PULUMI_ACCESS_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)

_PEM = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL)
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)"
                         r"[A-Z0-9]{16}(?![A-Z0-9])")
_LABELLED = re.compile(
    r"((?:aws[_\-. ]?)?(?:secret[_\-. ]?access[_\-. ]?key|session[_\-. ]?token)"
    r"[\"']?\s*(?:[:=]|=>)\s*[\"']?)"
    r"([A-Za-z0-9/+=]{16,})",
    re.IGNORECASE,
)
_GITHUB = re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})")


class Scrubber:
    """`scrub` with its secret values looked up once: for rendering thousands of strings."""

    def __init__(self, extra_secrets: Iterable[str] = (), *,
                 environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        names = [*SECRET_ENV_VARS, *(k for k in env if k.startswith("ACTIONS_") and k.endswith("_TOKEN"))]
        values = [env.get(name, "") for name in names] + _file_secret(env.get(PASSPHRASE_FILE_VAR))
        literal = {v for v in values if len(v) >= MIN_ENV_SECRET}
        literal.update(s for s in extra_secrets if s and len(s) >= MIN_EXTRA_SECRET)
        # longest first, so a secret that contains another is removed whole
        self._literal = sorted(literal, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for value in self._literal:
            if value in text:
                text = text.replace(value, REDACTED)
        if "PRIVATE KEY-----" in text:
            text = _PEM.sub(REDACTED, text)
        text = _LABELLED.sub(_keep_label, text)
        text = _AWS_KEY_ID.sub(REDACTED, text)
        return _GITHUB.sub(REDACTED, text)

    def data(self, data: object) -> object:
        """Every string (keys too) of a JSON-like structure, scrubbed."""
        if isinstance(data, str):
            return self(data)
        if isinstance(data, Mapping):
            return {self(str(k)): self.data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.data(v) for v in data]
        return data


def _file_secret(path: str | None) -> list[str]:
    """The passphrase in PULUMI_CONFIG_PASSPHRASE_FILE (as Pulumi reads it: the whole file, and
    without its trailing newline); nothing when there is no readable small file."""
    if not path:
        return []
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SECRET_FILE + 1)
    except OSError:
        return []
    if len(raw) > MAX_SECRET_FILE:
        return []
    text = raw.decode("utf-8", errors="replace")
    return [text, text.rstrip("\r\n")]


def _keep_label(m: re.Match[str]) -> str:
    return m.group(1) + REDACTED


def scrub(text: str, extra_secrets: Iterable[str] = (), *,
          environ: Mapping[str, str] | None = None) -> str:
    """`text` with every known secret shape and every known secret value replaced by REDACTED."""
    return Scrubber(extra_secrets, environ=environ)(text)


def scrub_data(data: object, extra_secrets: Iterable[str] = ()) -> object:
    """`scrub` applied to every string (keys too) of a JSON-like structure."""
    return Scrubber(extra_secrets).data(data)
