"""The scheduled readiness function's configuration: what `orchestrate up` hands the replication
stack (`ReplicationArgs.readiness`), which the program puts into the function's READINESS_CONFIG and
`scheduled.probe_from_config` reads back.

It holds what a CLI run's probe gets from the engine (`run.probe_for`), taken at `up` time, because
the function has no Pulumi CLI and no access to the state backend's secrets:

- the topology, reduced to the keys the rules read (a document `orchestrator.topology.parse` accepts);
- the stack outputs the rules read, and only those (the function's environment is limited to 4 KB
  in total by Lambda); secret outputs are never copied;
- the backup destination and signing key spec as the CLI finds them (the environment variables,
  else the home region stack's outputs), the backend URL without credentials, the secrets provider.

Values are names, ARNs and URLs, never secret material: a signing key is a spec (`awskms:<ARN>`),
the passphrase provider is the word `passphrase`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.topology import Topology

# The outputs the rules read (orchestrator/readiness/rules/*: region_outputs, stack_outputs, ArcWiring)
REGION_KEYS = ("domainConfigurationName", "certificateArn", "streamName", "dataLakeBucketName")
DNS_KEYS = ("healthCheckIds", "routingControls", "clusterEndpoints", "controlPanelArn", "safetyRule")
ENV_VAR = "READINESS_CONFIG"
MAX_ENVIRONMENT_BYTES = 4096  # Lambda: all of a function's environment variables, keys and values


def topology_document(topology: Topology) -> dict[str, Any]:
    """The topology reduced to what the rules read; `parse` gives back the same members and modes."""
    doc: dict[str, Any] = {
        "env": topology.env, "domain": topology.domain, "hosted_zone": topology.hosted_zone,
        "primary": topology.primary, "secondaries": list(topology.secondaries),
        "routing": topology.routing.value, "failover_control": topology.failover_control.value,
        "residency": list(topology.residency),
    }
    if topology.home_region and topology.home_region != topology.primary:
        doc["home_region"] = topology.home_region
    if topology.backup_region:
        doc["backup_region"] = topology.backup_region
    return doc


def _plain(value: Any) -> tuple[bool, Any]:
    """(secret?, the plain value) of an engine OutputValue or a plain value."""
    return bool(getattr(value, "secret", False)), getattr(value, "value", value)


def _pick(outputs: Mapping[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in keys:
        if outputs is None or key not in outputs:
            continue
        secret, value = _plain(outputs[key])
        if not secret and value not in (None, "", {}, []):
            found[key] = value
    return found


def without_credentials(url: str | None) -> str | None:
    """A backend URL with any user:password@ part removed (the rules read its bucket and region)."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def function_config(topology: Topology, outputs: Callable[[str], Mapping[str, Any] | None], *,
                    backend_url: str | None, secrets_provider: str | None) -> dict[str, Any]:
    """The function's configuration from the engine's view of the environment (`outputs(stack)`)."""
    from orchestrator.operations.backups import BACKUP_DEST_ENV
    from orchestrator.registry.signing import SIGNING_KEY_ENV
    from orchestrator.stacks.graph import dns_stack, region_stack
    from programs.contract import BACKUP_OUTPUT, SIGNING_KEY_OUTPUT

    picked: dict[str, dict[str, Any]] = {}
    for region in topology.regions:
        name = region_stack(topology, region).name
        got = _pick(outputs(name), REGION_KEYS)
        if got:
            picked[name] = got
    dns = dns_stack(topology).name
    got = _pick(outputs(dns), DNS_KEYS)
    if got:
        picked[dns] = got
    home = _pick(outputs(region_stack(topology, topology.home_region).name), (BACKUP_OUTPUT, SIGNING_KEY_OUTPUT))
    dest = os.environ.get(BACKUP_DEST_ENV) or (
        f"s3://{home[BACKUP_OUTPUT]}/registry" if BACKUP_OUTPUT in home else None)
    return {"env": topology.env, "topology": topology_document(topology), "outputs": picked,
            "backup_dest": dest, "signing_key": os.environ.get(SIGNING_KEY_ENV) or home.get(SIGNING_KEY_OUTPUT),
            "backend_url": without_credentials(backend_url),
            "secrets_provider": secrets_provider}


def encode(config: Mapping[str, Any]) -> str:
    """Compact, stable JSON (an unchanged environment re-deploys nothing)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def from_engine(topology: Topology, engine: Any) -> str:
    """The encoded configuration from a running engine (`up` and `preview` of the replication stack):
    a stack that cannot be read contributes nothing (its rules then say NOT READY or UNKNOWN)."""
    from orchestrator.errors import OrchestrateError

    def outputs(name: str) -> Mapping[str, Any] | None:
        try:
            return engine.outputs(name) or {}
        except OrchestrateError:
            return {}

    return encode(function_config(topology, outputs, backend_url=getattr(engine, "backend_url", None),
                                  secrets_provider=getattr(engine, "secrets_provider", None)))
