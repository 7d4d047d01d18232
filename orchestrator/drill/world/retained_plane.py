"""MQTT retained messages on the `iot-data` plane, which moto 5.2.5 does not have, added to the local AWS world.

Loaded into the moto server by `procs.STRICT_MOTO` (the drill's world and every test tier), never by
the orchestrator itself. The store lives on moto's per-account, per-region iot-data backend, so
`/moto-api/reset` clears it, and each region keeps its own (IoT Core keeps retained messages per
account and Region: nothing is shared between regions). The rules, with their sources
(docs/field-notes-iot.md, "Retained messages"):

- Publish with `retain=true` stores the message (payload, QoS, MQTT 5 user properties, the time in
  epoch milliseconds) under its topic, replacing the one there; one message per topic. With an
  empty (0-byte) payload it deletes the topic's retained message and stores nothing ("Publishing an
  empty (null) payload with retain = true deletes the retained message", Publish API reference).
  Every publish is still recorded as moto records it (`published_payloads`).
- A topic to publish to is 1 to MAX_TOPIC_BYTES bytes of UTF-8, without the wildcards `+` and `#`,
  with at most MAX_TOPIC_SLASHES forward slashes (message broker quotas); QoS is 0 or 1 (API
  reference: valid range 0-1); otherwise InvalidRequestException.
- A payload over MAX_PAYLOAD_BYTES (the message size quota; a retained message is a published
  message) is refused with RequestEntityTooLargeException (413), retained or not.
- When the account has stored `max_retained` messages (MAX_RETAINED_PER_ACCOUNT, or the world's
  setting `ORCHESTRATE_WORLD_RETAINED_MAX` read at install: the quota is adjustable), a retained
  publish with a payload of more than 0 bytes to a topic that has none is answered with a throttled
  response (ThrottlingException, 429) "until some retained messages are deleted" (developer guide,
  retained message limits); replacing an existing topic's message and deleting one still work.
- ListRetainedMessages: `maxResults` 1 to 200 (API reference; anything else InvalidRequestException),
  DEFAULT_PAGE when not given (the reference names no default: small, so a caller that does not
  follow `nextToken` is caught), a `nextToken` on every page but the last, an unknown token refused;
  summaries carry topic, payloadSize, qos and lastModifiedTime, never the payload.
- GetRetainedMessage: topic, payload, qos, lastModifiedTime, userProperties; a topic without a
  retained message is ResourceNotFoundException (404).
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any
from urllib.parse import unquote

MAX_PAYLOAD_BYTES = 128 * 1024  # message size quota ("payload for every publish request", 128 KB)
MAX_RETAINED_PER_ACCOUNT = 500_000  # "Maximum number of retained messages per account" (adjustable)
MAX_TOPIC_BYTES = 256  # topic size quota (UTF-8 bytes)
MAX_TOPIC_SLASHES = 7  # "Maximum number of slashes in topic and topic filter"
MAX_PAGE = 200  # ListRetainedMessages maxResults: "Minimum value of 1. Maximum value of 200."
DEFAULT_PAGE = 25  # assumption (the reference names none)
LIMIT_ENV = "ORCHESTRATE_WORLD_RETAINED_MAX"


def _store(backend: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = backend.__dict__.setdefault("_orchestrate_retained", {})
    return found


def _error(code: str, message: str, status: int) -> Exception:
    from moto.core.exceptions import JsonRESTError

    err = JsonRESTError(code, message)
    err.code = status
    return err


def check_topic(topic: str) -> None:
    """A topic a message may be published to (InvalidRequestException otherwise)."""
    raw = topic.encode("utf-8")
    if not raw or len(raw) > MAX_TOPIC_BYTES:
        raise _error("InvalidRequestException", f"topic must be 1 to {MAX_TOPIC_BYTES} bytes of UTF-8", 400)
    if "+" in topic or "#" in topic:
        raise _error("InvalidRequestException", f"cannot publish to a topic filter with wildcards: {topic}", 400)
    if topic.count("/") > MAX_TOPIC_SLASHES:
        raise _error("InvalidRequestException",
                     f"topic has more than {MAX_TOPIC_SLASHES} forward slashes: {topic}", 400)


def install(limit: int | None = None) -> None:
    """Add the calls to moto's iot-data responses (idempotent). `limit`: the account's retained
    message quota [default: $ORCHESTRATE_WORLD_RETAINED_MAX, else MAX_RETAINED_PER_ACCOUNT]."""
    from moto.iotdata.responses import IoTDataPlaneResponse

    if getattr(IoTDataPlaneResponse, "_orchestrate_retained", False):
        return
    max_retained = limit if limit is not None else int(os.environ.get(LIMIT_ENV) or MAX_RETAINED_PER_ACCOUNT)

    def _topic_after(self: Any, marker: str) -> str:
        topic = self.path.split(marker, 1)[-1].split("?", 1)[0]
        return unquote(topic) if "%" in topic else topic

    def _query(self: Any, name: str) -> str | None:
        values = self.querystring.get(name)
        return values[0] if values else None

    def publish(self: Any) -> str:
        topic = _topic_after(self, "/topics/")
        check_topic(topic)
        qos_raw = _query(self, "qos") or "0"
        if qos_raw not in ("0", "1"):
            raise _error("InvalidRequestException", f"qos must be 0 or 1, got {qos_raw}", 400)
        payload = bytes(self.body or b"")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise _error("RequestEntityTooLargeException",
                         f"The payload exceeds the maximum size allowed ({MAX_PAYLOAD_BYTES} bytes)", 413)
        if (_query(self, "retain") or "false").lower() == "true":
            store = _store(self.iotdata_backend)
            if not payload:
                store.pop(topic, None)
            else:
                if topic not in store and len(store) >= max_retained:
                    raise _error("ThrottlingException",
                                 f"the account has stored the maximum number of retained messages ({max_retained})",
                                 429)
                props = self.headers.get("x-amz-mqtt5-user-properties")
                store[topic] = {"payload": payload, "qos": int(qos_raw),
                                "lastModifiedTime": int(time.time() * 1000),
                                "userProperties": base64.b64decode(props) if props else None}
        self.iotdata_backend.publish(topic=topic, payload=payload)
        return json.dumps({})

    def list_retained_messages(self: Any) -> str:
        size_raw = _query(self, "maxResults")
        try:
            size = DEFAULT_PAGE if size_raw is None else int(size_raw)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE:
            raise _error("InvalidRequestException", f"maxResults must be between 1 and {MAX_PAGE}", 400)
        topics = sorted(_store(self.iotdata_backend))
        token = _query(self, "nextToken")
        start = 0
        if token is not None:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("retained:"))
            except (ValueError, UnicodeDecodeError):
                raise _error("InvalidRequestException", "invalid nextToken", 400) from None
            if start <= 0:  # a token this world never gave (one past the end: topics cleared meanwhile)
                raise _error("InvalidRequestException", "invalid nextToken", 400)
        store = _store(self.iotdata_backend)
        rows = [{"topic": t, "payloadSize": len(store[t]["payload"]), "qos": store[t]["qos"],
                 "lastModifiedTime": store[t]["lastModifiedTime"]} for t in topics[start:start + size]]
        body: dict[str, Any] = {"retainedTopics": rows}
        if start + size < len(topics):
            body["nextToken"] = base64.urlsafe_b64encode(f"retained:{start + size}".encode()).decode()
        return json.dumps(body)

    def get_retained_message(self: Any) -> str:
        topic = _topic_after(self, "/retainedMessage/")
        found = _store(self.iotdata_backend).get(topic)
        if found is None:
            raise _error("ResourceNotFoundException", f"No retained message for topic {topic}", 404)
        body: dict[str, Any] = {"topic": topic, "payload": base64.b64encode(found["payload"]).decode(),
                                "qos": found["qos"], "lastModifiedTime": found["lastModifiedTime"]}
        if found["userProperties"] is not None:
            body["userProperties"] = base64.b64encode(found["userProperties"]).decode()
        return json.dumps(body)

    for fn in (publish, list_retained_messages, get_retained_message):
        setattr(IoTDataPlaneResponse, fn.__name__, fn)
    setattr(IoTDataPlaneResponse, "_orchestrate_retained", True)  # noqa: B010 - a flag on a foreign class
