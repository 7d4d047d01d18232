"""The canary's Lambda handler: one MQTT round trip (`orchestrator.drill.canary.probe`) to this region's
IoT data endpoint, presenting the custom domain as SNI, reported as the `MqttRoundTrip` metric.

Deployed per region by `programs/canary.py`, invoked every minute by an EventBridge schedule. It
connects to the region's own ATS endpoint (`CANARY_ENDPOINT`), never to whatever the custom domain
resolves to: the domain follows DNS to the routed region, so a canary resolving it would report the
health of another region and feed that into this region's Route 53 check. The SNI and the name the
server certificate must match are the custom domain (`CANARY_DOMAIN`), so IoT serves the region's
domain configuration and its ACM certificate, exactly what a device sees.

The canary thing's certificate and private key are read from one Secrets Manager secret
(`CANARY_SECRET_ARN`, JSON `{"certificatePem", "privateKey"}`), written to a private temporary
directory only long enough to load them into the TLS context, and never logged. Any failure before
or during the round trip is reported as 0 (unhealthy); a run that cannot report at all leaves the
metric missing, which the alarm treats as breaching.

Import closure: the standard library, boto3 (provided by the Lambda runtime, imported lazily) and
`orchestrator.drill.canary`; nothing else goes into its zip (`programs.package`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.drill.canary import METRIC_NAMESPACE, CanaryResult, probe

DEFAULT_PORT = 8883  # MQTT over TLS; a custom domain serves it as the ATS endpoint does
DEFAULT_TIMEOUT_S = 5.0

Probe = Callable[..., CanaryResult]


def tls_context(credentials: Mapping[str, str]) -> ssl.SSLContext:
    """Server verified against the system trust store (ACM's chain), client certificate for mutual TLS."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    folder = tempfile.mkdtemp(prefix="canary-")  # 0700
    try:
        cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        for path, text in ((cert, credentials["certificatePem"]), (key, credentials["privateKey"])):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
        context.load_cert_chain(cert, key)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return context


def datum(result: CanaryResult, *, env: str, region: str) -> dict[str, Any]:
    """The CloudWatch datum: `MqttRoundTrip` by Env and Region (two envs may share an account)."""
    metric = result.metric(region)
    metric["Dimensions"] = [{"Name": "Env", "Value": env}, *metric["Dimensions"]]  # type: ignore[misc]
    return metric


def run(environ: Mapping[str, str], *, secrets_client: Any, cloudwatch: Any,
        probe_fn: Probe = probe) -> dict[str, Any]:
    """One canary run with injected clients: probe, put the metric, return a log-safe summary."""
    env, region = environ["CANARY_ENV"], environ["CANARY_REGION"]
    topic = f"{environ['CANARY_TOPIC_PREFIX']}/{secrets.token_hex(4)}"
    t0 = time.monotonic()
    try:
        raw = secrets_client.get_secret_value(SecretId=environ["CANARY_SECRET_ARN"])["SecretString"]
        context = tls_context(json.loads(raw))
    except Exception as exc:  # noqa: BLE001 - any setup failure is an unhealthy run, reported as such
        result = CanaryResult(False, "setup", f"credentials: {type(exc).__name__}", time.monotonic() - t0)
    else:
        result = probe_fn(environ["CANARY_ENDPOINT"], int(environ.get("CANARY_PORT") or DEFAULT_PORT),
                          environ["CANARY_DOMAIN"], environ["CANARY_CLIENT_ID"], tls=context,
                          timeout=float(environ.get("CANARY_TIMEOUT_S") or DEFAULT_TIMEOUT_S), topic=topic)
    cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=[datum(result, env=env, region=region)])
    return {"env": env, "region": region, "healthy": result.healthy, "stage": result.stage,
            "detail": result.detail, "seconds": round(result.seconds, 3), "topic": topic}


def handler(event: Any, context: Any) -> dict[str, Any]:
    import logging

    import boto3  # provided by the Lambda runtime

    region = os.environ["CANARY_REGION"]
    summary = run(os.environ, secrets_client=boto3.client("secretsmanager", region_name=region),
                  cloudwatch=boto3.client("cloudwatch", region_name=region))
    log = logging.getLogger("orchestrate.canary")
    log.setLevel(logging.INFO)
    log.info(json.dumps(summary, sort_keys=True))  # the function's log line (CloudWatch Logs)
    return summary
