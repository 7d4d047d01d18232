"""What Lambda's Python runtime holds besides the standard library, for tests that import a deployed
function's zip in a clean interpreter (`python -I -S`) with nothing else on its path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

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


def unpack(archive: Path, declared_hash: str, names: list[str], tmp: Path) -> Path:
    """Unzip a deployed function's archive into `tmp/app` after checking it is the one the program
    declares (its base64 SHA-256 is the `sourceCodeHash`) and holds exactly `names`."""
    import base64
    import hashlib
    import zipfile

    assert base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode() == declared_hash
    app = tmp / "app"
    with zipfile.ZipFile(archive) as zipped:
        assert sorted(zipped.namelist()) == names
        zipped.extractall(app)
    return app


# The ending every driver prints: which orchestrator modules it loaded (and from where), and whether
# anything from a site or this checkout's packages came in.
DRIVER_END = """
loaded = {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.split(".")[0] == "orchestrator"}
print("MODULES " + json.dumps(loaded))
print("SITE " + json.dumps([n for n in ("site", "click", "pulumi", "yaml") if n in sys.modules]))
"""


def run_unzipped(driver: str, app: Path, events: list[tuple[str, Any]], env: dict[str, str],
                 tmp: Path) -> tuple[dict[str, Any], list[str]]:
    """Run `driver` (its argv: the app directory, the runtime directory, the events file; it prints
    `RESULT [name, out]` per event and ends with DRIVER_END) in `python -I -S` with only the unzipped
    app and the runtime on its path, dummy credentials and no AWS config. Checks every orchestrator
    module came from the app and nothing from a site; returns the results by event name and stdout's
    lines."""
    import json
    import subprocess
    import sys

    (tmp / "driver.py").write_text(driver + DRIVER_END)
    (tmp / "events.json").write_text(json.dumps(events))
    env = {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"), "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.run([sys.executable, "-I", "-S", str(tmp / "driver.py"), str(app), str(runtime_dir(tmp)),
                           str(tmp / "events.json")], capture_output=True, text=True, timeout=300, cwd=tmp, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    results = dict(json.loads(line[len("RESULT "):]) for line in lines if line.startswith("RESULT "))
    modules = json.loads(next(x for x in lines if x.startswith("MODULES "))[len("MODULES "):])
    assert modules and all(str(f).startswith(str(app)) for f in modules.values()), modules
    assert json.loads(next(x for x in lines if x.startswith("SITE "))[len("SITE "):]) == []
    return results, lines
