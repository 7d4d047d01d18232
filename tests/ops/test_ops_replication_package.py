"""The replication function tested as deployed: the exact zip the replication program hands to
Lambda, unzipped, run in a fresh interpreter (`python -I -S`: no site-packages, no PYTHONPATH, no
editable install) whose path holds only that code and the packages Lambda's Python runtime provides
(boto3 and its dependencies), through every handler path against moto: applied, refused (an
operation AWS answers with an error), throttled then applied, poison record, the scheduled
reconciliation and an unknown event. A module the package leaves out fails here, on the path that
imports it, instead of in Lambda (where it dead-letters records with the wrong message).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aws import AwsContext, client
from programs import package
from tests.lambda_runtime import run_unzipped, unpack
from tests.ops.conftest import DST, SRC
from tests.ops.registry_world import device_policy, make_pem
from tests.ops.replication_world import applied_table, now_ms, payload, rule_item, stream_record
from tests.passthrough import Answer, passthrough

FUNCTION = "aws:lambda/function:Function"
THROTTLED_CREATES = 2  # CreateThing calls in the destination answered ThrottlingException first

DRIVER = """
import json, logging, sys
app, runtime, events_file = sys.argv[1:4]
sys.path[:0] = [app, runtime]
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(message)s")
import orchestrator.registry.replicate as replicate
for name, event in json.load(open(events_file)):
    try:
        out = replicate.handler(event, None)
    except Exception as exc:
        out = {"raised": type(exc).__name__ + ": " + str(exc)}
    print("RESULT " + json.dumps([name, out]), flush=True)
"""  # + lambda_runtime.DRIVER_END


def deployed_zip() -> tuple[Path, str]:
    """The archive the replication program gives its Function, and the hash it declares."""
    from programs.mocks import evaluate
    from tests.programs.conftest import SECONDARY, THIRD, replication_args

    ev = evaluate(replace(replication_args(SECONDARY, THIRD), routing="failover"), stack="dev-replication")
    functions = [fn for fn in ev.of_type(FUNCTION) if "readiness" not in fn.name]  # the replicators
    assert functions
    paths = {fn.inputs["code"]["fileArchive"] for fn in functions}  # the mocks record a FileArchive by its path
    hashes = {fn.inputs["sourceCodeHash"] for fn in functions}
    assert len(paths) == len(hashes) == 1
    return Path(paths.pop()), hashes.pop()




class Throttler:
    """A pass-through proxy in front of the test endpoint. In DST it answers the first
    THROTTLED_CREATES CreateThing requests with 400 ThrottlingException (as IoT does over its quota)
    and refuses the first CreateThing of `pkg-refused` with 400 InvalidRequestException (a refusal
    the replicator reports as an operation error, `OpError`; the reconciliation then creates it)."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.throttled, self.refused, self.url = upstream.rstrip("/"), 0, 0, ""
        self._lock = threading.Lock()

    def _fault(self, method: str, path: str, auth: str) -> tuple[str, str] | None:
        if method != "POST" or not path.startswith("/things/") or f"/{DST}/iot/" not in auth:
            return None
        with self._lock:
            if path.split("?")[0] == "/things/pkg-refused" and not self.refused:
                self.refused += 1
                return "InvalidRequestException", "refused by the test"
            if self.throttled >= THROTTLED_CREATES:
                return None
            self.throttled += 1
            return "ThrottlingException", "Rate exceeded"

    def _intercept(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        fault = self._fault(method, path, headers.get("Authorization", ""))
        if fault is None:
            return None
        return 400, [("x-amzn-ErrorType", f"{fault[0]}:"), ("Content-Type", "application/json")], \
            json.dumps({"message": fault[1]}).encode()

    def serve(self) -> Iterator[Throttler]:
        with passthrough(self.upstream, self._intercept) as self.url:
            yield self


@pytest.fixture
def throttler(endpoint: str) -> Iterator[Throttler]:
    yield from Throttler(endpoint).serve()


def _provision(iot: Any, thing: str, serial: int) -> str:
    iot.create_thing(thingName=thing, attributePayload={"attributes": {"serial": str(serial)}})
    cert = iot.register_certificate_without_ca(certificatePem=make_pem(thing, serial), status="ACTIVE")
    try:
        iot.create_policy(policyName="device", policyDocument=device_policy())
    except iot.exceptions.ResourceAlreadyExistsException:
        pass
    iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    iot.attach_policy(policyName="device", target=cert["certificateArn"])
    return str(cert["certificateId"])


def _thing(name: str, t: int) -> dict[str, Any]:
    event = payload("thing", thingName=name, operation="CREATED", timestamp=t, versionNumber=1,
                    eventId=f"{name}-{t}", thingTypeName=None, attributes={"serial": "1"})
    return stream_record(rule_item(event, SRC), SRC)


def test_the_lazily_imported_packages_are_known_and_none_is_imported_at_module_level() -> None:
    """The closure is computed, not listed: `orchestrator/scrub.py` (imported inside OpError) is in it,
    and every package the runtime lacks is reached only inside a function (named here)."""
    files, lazy = package.closure()
    assert "orchestrator/scrub.py" in files and "orchestrator/registry/replicate.py" in files
    assert not any(f.startswith(("orchestrator/cli/", "orchestrator/engine/", "orchestrator/drill/")) for f in files)
    assert lazy == ["ruamel <- orchestrator/topology.py", "yaml <- orchestrator/registry/quotas.py",
                    "yaml <- orchestrator/topology.py"]


def test_a_module_level_import_the_runtime_lacks_fails_the_build(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "orchestrator" / "registry").mkdir(parents=True)
    (root / "orchestrator" / "__init__.py").write_text("")
    (root / "orchestrator" / "registry" / "__init__.py").write_text("")
    (root / "orchestrator" / "registry" / "replicate.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import click\n"
        "from orchestrator import helper\ndef handler(event, context):\n    from orchestrator import later\n")
    (root / "orchestrator" / "helper.py").write_text("import yaml\n")
    (root / "orchestrator" / "later.py").write_text("import boto3\n")
    with pytest.raises(package.PackageError, match="orchestrator/helper.py imports yaml at module level"):
        package.closure(root)
    (root / "orchestrator" / "helper.py").write_text("def f():\n    import yaml\n")
    files, lazy = package.closure(root)
    assert files == ["orchestrator/__init__.py", "orchestrator/helper.py", "orchestrator/later.py",
                     "orchestrator/registry/__init__.py", "orchestrator/registry/replicate.py"]
    assert lazy == ["yaml <- orchestrator/helper.py"]  # TYPE_CHECKING imports never run: click is not named
    (root / "orchestrator" / "later.py").unlink()
    with pytest.raises(package.PackageError,
                       match="orchestrator.later is imported by orchestrator/registry/replicate.py"):
        package.closure(root)


def test_the_deployed_zip_runs_every_handler_path_in_a_fresh_interpreter(
        ctx: AwsContext, throttler: Throttler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = unpack(*deployed_zip(), package.closure()[0], tmp_path)

    src, dst = client(ctx, "iot", SRC), client(ctx, "iot", DST)
    table = applied_table(ctx, DST)
    applied_cert = _provision(src, "pkg-applied", 41)
    _provision(src, "pkg-throttled", 42)
    _provision(src, "pkg-later", 43)
    _provision(src, "pkg-refused", 44)
    t = now_ms()
    refused = _thing("pkg-refused", t)
    poison = stream_record({"eventId": "x", "eventType": "SOMETHING_ELSE", "originRegion": SRC,
                            "eventTimeMs": t}, SRC)
    events = [
        ("applied", {"Records": [_thing("pkg-applied", t)]}),
        ("refused", {"Records": [refused]}),
        ("throttled", {"Records": [_thing("pkg-throttled", t)]}),
        ("poison", {"Records": [poison]}),
        ("reconcile", {"reconcile": {"from": SRC}}),
        # the state machine's slices: the first may take one page only (so the pass cannot end in
        # it), the second takes what is left and ends the pass
        ("slice-read", {"reconcile": {"from": SRC, "slice": {"max_pages": 1}}}),
        ("slice-apply", {"reconcile": {"from": SRC, "slice": {}}}),
        ("unknown", {"something": 1}),
    ]
    queue = client(ctx, "sqs", DST).create_queue(QueueName="iot-dev-replication-refused")["QueueUrl"]
    results, lines = run_unzipped(DRIVER, app, events, {
        "AWS_REGION": DST, "REPLICATION_ENV": "dev", "APPLIED_TABLE": table, "AWS_ENDPOINT_URL": throttler.url,
        "MEMBER_REGIONS": f"{SRC},{DST}", "DEAD_LETTER_QUEUE_URL": queue}, tmp_path)
    logs = [line[len("LOG "):] for line in lines if line.startswith("LOG ")]
    failed = {json.loads(x)["sequence"]: json.loads(x)["error"] for x in logs if x.startswith('{"sequence"')}

    assert results["applied"] == {"batchItemFailures": []}
    assert dst.describe_thing(thingName="pkg-applied")["thingName"] == "pkg-applied"
    principals = dst.list_thing_principals(thingName="pkg-applied")["principals"]
    assert applied_cert in {p.rsplit("/", 1)[1] for p in principals}
    # refused by AWS: reported for Lambda to retry, with AWS's error (not an ImportError of a missing module)
    seq = refused["dynamodb"]["SequenceNumber"]
    assert results["refused"] == {"batchItemFailures": [{"itemIdentifier": seq}]}
    assert "InvalidRequestException" in failed[seq] and "refused by the test" in failed[seq], failed[seq]
    assert "Module" not in failed[seq] and "Import" not in failed[seq]
    assert throttler.throttled == THROTTLED_CREATES
    assert results["throttled"] == {"batchItemFailures": []}
    assert dst.describe_thing(thingName="pkg-throttled")["thingName"] == "pkg-throttled"
    seq = poison["dynamodb"]["SequenceNumber"]
    # a malformed record is refused: sent to the function's dead-letter queue, the batch goes on
    assert results["poison"] == {"batchItemFailures": []}
    letters = client(ctx, "sqs", DST).receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    refused_letters = [json.loads(m["Body"])["refusedRecord"] for m in letters]
    assert [(r["sequence"], "unknown eventType" in r["reason"]) for r in refused_letters] == [(seq, True)]
    assert results["reconcile"]["ok"] is True and results["reconcile"]["applied"] >= 1
    assert results["reconcile"]["plane"]["ok"] is True  # the plane pass runs from the zip too (reconcile_plane)
    assert {dst.describe_thing(thingName=n)["thingName"] for n in ("pkg-later", "pkg-refused")} == {
        "pkg-later", "pkg-refused"}
    assert results["slice-read"]["done"] is False
    assert results["slice-read"]["progress"]["phase"] in ("fleet", "read", "certificates", "apply")
    assert results["slice-apply"]["done"] is True and results["slice-apply"]["result"]["ok"] is True
    assert results["unknown"] == {"raised": "ValueError: unknown event: expected stream Records or a reconcile request"}
