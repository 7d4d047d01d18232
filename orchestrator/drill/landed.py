"""Landed, not just acknowledged: where each QoS 1 message a device published ended up.

A PUBACK says a broker took the message; it has landed only when the region's rule delivered it to
the lake (in the drill, the region's telemetry sink, which stands in for the rule to Kinesis/S3). A
broker that dies between the two loses what it acknowledged, and a device that forgot the message on
PUBACK cannot send it again. `tally` counts, per device, against the region that acknowledged each
message (the region the device was connected to when its PUBACK arrived).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Landing:
    acknowledged: int  # messages a broker acknowledged (PUBACK)
    landed_where_acked: int  # ... and that reached the lake of the region that acknowledged them
    landed_elsewhere: int  # ... that reached only another region's lake (sent again after a failover)
    acked_never_landed: int  # ... that reached no lake: lost after the acknowledgement
    unacked_landed: int  # never acknowledged (the connection died first) but landed somewhere
    never_landed: int  # published and in no lake, acknowledged or not


def tally(published: set[int], acked_in: Mapping[int, str | None],
          landed_in: Mapping[int, set[str]]) -> Landing:
    acked = [s for s in published if s in acked_in]
    where = sum(1 for s in acked if acked_in[s] is not None and acked_in[s] in landed_in.get(s, set()))
    anywhere = sum(1 for s in acked if landed_in.get(s))
    return Landing(acknowledged=len(acked), landed_where_acked=where, landed_elsewhere=anywhere - where,
                   acked_never_landed=len(acked) - anywhere,
                   unacked_landed=sum(1 for s in published if s not in acked_in and landed_in.get(s)),
                   never_landed=sum(1 for s in published if not landed_in.get(s)))
