"""The replication function's deployment package, built reproducibly from the project's own code.

The function runs `orchestrator.registry.replicate.handler` with the registry package as it is in
this checkout (the same plan/apply code `registry sync` runs), plus the few modules it imports
(`errors`, `aws`, `state`). Nothing else goes in: no click, no pulumi, no third-party package
(Lambda's Python runtime provides boto3).

Reproducible: the same source files give the same bytes on any machine and at any time, so an
unchanged function is never re-deployed. Entries are sorted by path, every entry has the same
timestamp (1980-01-01, the zip epoch), mode 0644, the same compression, no directory entries and
no extra fields; bytecode and caches are never included.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDLER = "orchestrator.registry.replicate.handler"
RUNTIME = "python3.12"
# What the handler imports (tests/programs/test_replication_package.py imports it from the zip alone).
SOURCES = ("orchestrator/__init__.py", "orchestrator/errors.py", "orchestrator/aws.py", "orchestrator/state.py")
PACKAGES = ("orchestrator/registry",)
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Package:
    path: Path
    sha256_b64: str  # Lambda's CodeSha256 form (base64 of the SHA-256 of the zip)
    files: tuple[str, ...]


def source_files(root: Path = ROOT) -> list[str]:
    files = set(SOURCES)
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                files.add(path.relative_to(root).as_posix())
    return sorted(files)


def package_bytes(root: Path = ROOT) -> tuple[bytes, tuple[str, ...]]:
    """The zip archive of the function's code, byte for byte the same for the same sources."""
    import io

    files = source_files(root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in files:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode below is what Lambda sees
            info.external_attr = (0o100644 & 0xFFFF) << 16
            archive.writestr(info, (root / name).read_bytes(), compresslevel=9)
    return buffer.getvalue(), tuple(files)


def build(root: Path = ROOT, out_dir: Path | None = None) -> Package:
    """Write the package (named by its digest, written once, atomically) and describe it."""
    data, files = package_bytes(root)
    digest = hashlib.sha256(data).digest()
    out_dir = out_dir or Path(tempfile.gettempdir()) / "orchestrate-packages"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"replicator-{digest.hex()[:16]}.zip"
    if not path.exists() or path.read_bytes() != data:
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".zip.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return Package(path, base64.b64encode(digest).decode(), files)
