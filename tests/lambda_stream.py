"""Lambda's DynamoDB-stream event source mapping, as strict as the service: how a shard's records are
delivered to the replication function and what a partial batch response makes Lambda do next.

What AWS documents (Lambda developer guide, "Configuring partial batch response with DynamoDB and
Lambda", services-ddb-batchfailurereporting; the Kinesis page says the same):
- Lambda checkpoints a batch only when it is a complete success: an empty or null
  `batchItemFailures` list, or an empty or null response.
- With several `batchItemFailures`, the checkpoint is the **lowest** sequence number, and Lambda
  retries **every record from that checkpoint on**, including records the function already
  applied: a later record is delivered again.
- An `itemIdentifier` that is an empty string or null, or an item with a wrongly named key, makes
  the whole batch a failure. (An identifier that is not a sequence number of the batch is not
  documented; this stand-in treats it as a whole-batch failure too, the strict reading.)
- A function error fails the whole batch; with BisectBatchOnFunctionError the batch is split in two
  and each half retried. With both bisect and partial responses, the batch is split at the returned
  sequence number and only the rest is retried (the same records as the checkpoint rule).
- After MaximumRetryAttempts retries of a failing batch, Lambda sends the batch's description to
  the on-failure destination and moves on: its records are never delivered again.
The tests used to redeliver only the records the function reported; this module is what they use
instead, so an apply that is not idempotent for a record delivered twice shows up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any]], Any]


def _sequence(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


@dataclass
class Shard:
    """One shard's delivery: every invocation, every record's deliveries, what went to on-failure."""

    batch_size: int = 100
    max_retry_attempts: int = 10
    bisect: bool = True
    between: Callable[[int], None] | None = None  # called after each invocation (its number): the world moves on
    invocations: int = 0
    whole_failures: int = 0  # invocations that failed as a whole (function error or an unusable response)
    deliveries: Counter[str] = field(default_factory=Counter)
    on_failure: list[tuple[str, str]] = field(default_factory=list)  # (first, last) sequence of a dropped batch

    def checkpoint_after(self, batch: Sequence[Mapping[str, Any]], response: Any) -> int | None:
        """How many records of `batch` are done: all of them (None), or the index Lambda restarts at.
        Raises ValueError for a response that fails the whole batch."""
        if response is None or response == "" or response == {}:
            return None
        if not isinstance(response, Mapping):
            raise ValueError(f"not a partial batch response: {response!r}")
        failures = response.get("batchItemFailures")
        if not failures:
            return None
        sequences = [_sequence(r) for r in batch]
        indexes = []
        for item in failures:
            if not isinstance(item, Mapping) or set(item) != {"itemIdentifier"}:
                raise ValueError(f"a batch item failure with a wrongly named key: {item!r}")
            ident = item["itemIdentifier"]
            if ident is None or ident == "":
                raise ValueError("a null or empty itemIdentifier fails the whole batch")
            if ident not in sequences:
                raise ValueError(f"itemIdentifier {ident!r} is not a sequence number of the batch")
            indexes.append(sequences.index(ident))
        return min(indexes)

    def run(self, handler: Handler, records: Sequence[dict[str, Any]], *, limit: int = 200) -> None:
        """Deliver `records` (one shard, in order) until every one is checkpointed or dropped."""
        position = 0
        pending: list[list[dict[str, Any]]] = []  # bisected halves still to deliver
        attempts = 0
        while position < len(records) or pending:
            if self.invocations >= limit:
                raise AssertionError(f"the shard did not drain in {limit} invocations")
            batch = pending.pop(0) if pending else list(records[position:position + self.batch_size])
            self.invocations += 1
            self.deliveries.update(_sequence(r) for r in batch)
            try:
                done: int | None = self.checkpoint_after(batch, handler({"Records": batch}))
                whole_failure = False
            except Exception:  # a function error or a response that fails the whole batch
                done, whole_failure = 0, True
                self.whole_failures += 1
            if self.between:
                self.between(self.invocations)
            if done is None:  # complete success
                position = max(position, records.index(batch[-1]) + 1)
                attempts = 0
                continue
            attempts += 1
            rest = batch[done:]
            if attempts > self.max_retry_attempts:
                self.on_failure.append((_sequence(rest[0]), _sequence(rest[-1])))
                position = max(position, records.index(batch[-1]) + 1)
                attempts = 0
                continue
            if whole_failure and self.bisect and len(rest) > 1:
                half = len(rest) // 2
                pending[:0] = [rest[:half], rest[half:]]
                continue
            position = records.index(rest[0])
            pending.clear()
