"""What Lambda's Python runtime holds besides the standard library, for tests that import a deployed
function's zip in a clean interpreter (`python -I -S`) with nothing else on its path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# boto3 and what it imports
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def runtime_dir(tmp: Path) -> Path:
    """A directory holding only RUNTIME_PACKAGES (links into this interpreter's copies)."""
    out = tmp / "runtime"
    out.mkdir()
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (out / source.name).symlink_to(source)
    return out
