"""How the stand-in provider retries AWS calls: as terraform-provider-aws does, on the tier's clock.

terraform-provider-aws's provider argument `max_retries` (website/docs/index.html.markdown):
"Maximum number of times an API call is retried when AWS throttles requests or you experience
transient failures. The delay between the subsequent API calls increases exponentially. If omitted,
the default value is `25`." The stand-in's botocore clients retry the same way: standard mode
(retryable and throttling errors, truncated exponential backoff with jitter, the retry quota), 25
retries (botocore's `max_attempts` counts retries, not the first attempt). The waits are botocore's
formula times the engine tier's time scale (`TIME_SCALE`: the provider's 15 s INSYNC poll is
0.05 s), so 25 throttled attempts pass in about a second instead of minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_RETRIES = 25  # terraform-provider-aws's default `max_retries`
TIME_SCALE = 0.05 / 15  # the engine tier's: terraform's 15 s wait for INSYNC is 0.05 s


def config() -> Any:
    from botocore.config import Config

    return Config(retries={"max_attempts": MAX_RETRIES, "mode": "standard"})


class _ScaledBackoff:
    """botocore's backoff, its delay times `scale`."""

    def __init__(self, backoff: Any, scale: float) -> None:
        self.backoff, self.scale = backoff, scale

    def delay_amount(self, context: Any) -> float:
        return float(self.backoff.delay_amount(context)) * self.scale


def client(service: str, region: str, endpoint_url: str, credentials: Mapping[str, str],
           scale: float = TIME_SCALE) -> Any:
    """A boto3 client (boto3's keyword `credentials`) that retries as the provider does, waiting
    `scale` x botocore's backoff."""
    import boto3

    made = boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=config(), **credentials)
    name = made.meta.service_model.service_id.hyphenize()
    registered = made.meta.events._emitter._unique_id_handlers.get(f"retry-config-{name}")
    handler = getattr(registered and registered.get("handler"), "__self__", None)
    policy = getattr(handler, "_retry_policy", None)
    if policy is None or not hasattr(policy, "_retry_backoff"):  # botocore changed: say so, do not wait minutes
        raise RuntimeError(f"botocore's standard retry handler for {service} was not found: cannot scale its backoff")
    policy._retry_backoff = _ScaledBackoff(policy._retry_backoff, scale)
    return made
