"""IoT policy documents: normalized JSON, and ARNs with a literal region moved to another region.

A policy with `arn:aws:iot:eu-west-1:…` in it grants nothing in eu-central-1. When a document
names its source region in an ARN, the sync rewrites that region to the destination region (or
to `*`, `RegionRewrite.WILDCARD`) and reports the policy. Region-neutral documents (`*` or
policy variables) are copied byte-for-byte after normalization. Only ARNs are rewritten: a
region in a condition value (`aws:RequestedRegion`) is data, not an address.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any


class RegionRewrite(str, Enum):
    DESTINATION = "destination"  # arn:aws:iot:<src>:… -> arn:aws:iot:<dst>:…
    WILDCARD = "wildcard"        # arn:aws:iot:<src>:… -> arn:aws:iot:*:…


NEUTRAL_REGION = "<region>"


def normalize_document(document: Any) -> str:
    """Canonical JSON text (sorted keys, no whitespace); text that is not JSON is kept, stripped."""
    if isinstance(document, (dict, list)):
        return json.dumps(document, sort_keys=True, separators=(",", ":"))
    text = str(document)
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return text.strip()


def _arn_region(region: str) -> re.Pattern[str]:
    # arn:<partition>:<service>:<region>:  (the account and resource follow)
    return re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]+:)" + re.escape(region) + r"(?=:)")


def mentions_region(document: str, region: str) -> bool:
    return bool(_arn_region(region).search(document))


def rewrite_region(document: str, src_region: str, dst_region: str,
                   mode: RegionRewrite = RegionRewrite.DESTINATION) -> tuple[str, bool]:
    """(document with src-region ARNs moved, whether anything changed)."""
    if src_region == dst_region and mode is RegionRewrite.DESTINATION:
        return document, False
    target = dst_region if mode is RegionRewrite.DESTINATION else "*"
    rewritten, count = _arn_region(src_region).subn(lambda m: m.group(1) + target, document)
    return rewritten, count > 0


def neutral(document: str, region: str) -> str:
    """The document with `region` in ARNs replaced by a placeholder: compare across regions."""
    return _arn_region(region).sub(lambda m: m.group(1) + NEUTRAL_REGION, document)
