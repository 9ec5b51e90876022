"""Signatures and idempotency keys, the way payment webhooks do them.

Every request carries ``X-Riskcockpit-Timestamp`` (unix seconds), ``X-Riskcockpit-Id`` (the
notification's idempotency key: the same notification keeps it across retries, redeliveries
and restarts, so a receiver drops duplicates by it) and ``X-Riskcockpit-Signature:
sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>``. Signing the timestamp lets a
receiver refuse replays of an old, validly signed request.

DingTalk and Feishu robots have their own optional signatures, computed here as their
documentation prescribes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable

HEADER_TIMESTAMP = "X-Riskcockpit-Timestamp"
HEADER_ID = "X-Riskcockpit-Id"
HEADER_SIGNATURE = "X-Riskcockpit-Signature"
DEFAULT_MAX_AGE = 300


def notification_id(receiver: str, group_key: str, alert_ids: Iterable[str], sequence: str) -> str:
    material = "\n".join([receiver, group_key, ",".join(sorted(alert_ids)), sequence])
    return hashlib.sha256(material.encode()).hexdigest()


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def signature(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    mac = hmac.new(_bytes(secret), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str | bytes | None, body: bytes, notification: str,
                   timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {HEADER_TIMESTAMP: str(timestamp), HEADER_ID: notification}
    if secret:
        headers[HEADER_SIGNATURE] = signature(secret, timestamp, body)
    return headers


def check(secret: str | bytes, timestamp: str, body: bytes, given: str, max_age: float | None = DEFAULT_MAX_AGE,
          now: float | None = None) -> str | None:
    """None if the signature holds, else why not (in words a receiver's log can show)."""
    try:
        moment = int(timestamp)
    except (TypeError, ValueError):
        return f"timestamp {timestamp!r} is not unix seconds"
    if max_age is not None:
        age = (time.time() if now is None else now) - moment
        if abs(age) > max_age:
            return f"timestamp is {age:.0f}s away from now (more than {max_age:.0f}s): stale or replayed"
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected, (given or "").strip()):
        return "signature does not match the body and timestamp"
    return None


def verify(secret: str | bytes, timestamp: str, body: bytes, given: str, max_age: float | None = DEFAULT_MAX_AGE,
           now: float | None = None) -> bool:
    return check(secret, timestamp, body, given, max_age, now) is None


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk custom robot: base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")), not yet URL-quoted."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu bot: the key is f"{timestamp}\\n{secret}" and the message is empty, then base64."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()
