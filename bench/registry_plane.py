"""Benchmark: API calls per object of the device-management plane's sync (orchestrator/registry/plane.py).

Against a moto server started here on 127.0.0.1 (with the calls moto lacks added, as in every test
tier), N role aliases, N job templates and N CA certificates in the source, then:

1. a first sync into an empty region (list, describe, create, read back);
2. an unchanged sync (list and describe both regions, nothing written);
3. `registry verify`'s plane part (both regions read).

    .venv/bin/python bench/registry_plane.py            # print the table
    .venv/bin/python bench/registry_plane.py --write    # also update docs/performance.md

Exit code 1 when a sync is not ok or the unchanged sync writes anything.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import machine, write_section  # noqa: E402
from bench.registry_sync import moto_server  # noqa: E402
from orchestrator.aws import AwsContext, client  # noqa: E402
from orchestrator.registry.calls import Caller  # noqa: E402
from orchestrator.registry.plane import REQUIRED_EVENTS, compare_plane, read_plane, sync_plane  # noqa: E402

SECTION = "Device-management plane: calls per object"
COMMAND = ".venv/bin/python bench/registry_plane.py --write"
SRC, DST = "eu-west-1", "eu-central-1"
ROLE = "arn:aws:iam::123456789012:role/device-credentials"


def _ca_pem(i: int) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ca-{i}")])
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(i + 1).not_valid_before(now).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def seed(iot: Any, n: int) -> None:
    for i in range(n):
        iot.create_role_alias(roleAlias=f"alias-{i}", roleArn=ROLE, credentialDurationSeconds=900 + i)
        iot.create_job_template(jobTemplateId=f"tpl-{i}", description="ota", document='{"op":"ota"}')
        iot.register_ca_certificate(caCertificate=_ca_pem(i), certificateMode="SNI_ONLY", setAsActive=True)
    iot.update_event_configurations(eventConfigurations={t: {"Enabled": True} for t in REQUIRED_EVENTS})


def calls(*callers: Caller) -> tuple[int, int]:
    reads = sum(c.stats.counts().reads for c in callers)
    writes = sum(c.stats.counts().writes for c in callers)
    return reads, writes


def run(url: str, n: int) -> dict[str, Any]:
    from tests.moto_server import reset

    reset(url)
    ctx = AwsContext(endpoint_url=url)
    src, dst = client(ctx, "iot", SRC, own_retries=True), client(ctx, "iot", DST, own_retries=True)
    seed(src, n)
    objects = 3 * n
    out: dict[str, Any] = {"objects": objects}
    a, b = Caller(src), Caller(dst)
    first = sync_plane(a, b)
    out["first"] = calls(a, b)
    a, b = Caller(src), Caller(dst)
    again = sync_plane(a, b)
    out["unchanged"] = calls(a, b)
    a, b = Caller(src), Caller(dst)
    kinds, _ = compare_plane(read_plane(a), read_plane(b))
    out["verify"] = calls(a, b)
    out["ok"] = first.ok and again.ok and not again.ops and out["unchanged"][1] == 0 \
        and all(k.differences == 0 for k in kinds)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--sizes", default="10,50")
    args = parser.parse_args()
    rows = []
    with moto_server() as url:
        for n in (int(x) for x in args.sizes.split(",")):
            rows.append(run(url, n))
    lines = ["| objects | first sync: reads / writes per object | unchanged sync: reads / writes per object "
             "| verify: reads per object | ok |", "|--:|--:|--:|--:|:--|"]
    for r in rows:
        o = r["objects"]
        lines.append(f"| {o} | {r['first'][0] / o:.2f} / {r['first'][1] / o:.2f} | "
                     f"{r['unchanged'][0] / o:.2f} / {r['unchanged'][1] / o:.2f} | {r['verify'][0] / o:.2f} | "
                     f"{'yes' if r['ok'] else 'NO'} |")
    body = ("Role aliases, job templates and CA certificates in equal numbers (objects = 3 × N), "
            "against moto on 127.0.0.1. Per object and kind: one describe in each region read (a list "
            "page holds up to 250), one create on a first sync, one describe of the destination's read-back; "
            "two singletons (indexing, events) add 2 reads per region and at most 2 writes, and each kind "
            "with nothing in it (here provisioning templates and authorizers) one list call per region. "
            "Provisioning templates and authorizers (from the code, not measured here): the same per object "
            "(one describe per region read, "
            "one create or update; a changed template body one list-versions call and one create-version "
            "more). Unchanged: no write.\n\n"
            + "\n".join(lines) + f"\n\n{machine()}. Reproduce: `{COMMAND}`.")
    print(body)
    if args.write:
        write_section(SECTION, body)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
