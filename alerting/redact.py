"""Secrets never reach a log line or an audit record.

Receivers register the secret values they read from the environment (signing keys, robot
tokens embedded in URLs); ``redact`` blanks them out of any text, and ``SecretFilter`` does it
for the HTTP libraries' own debug logs, which print request URLs.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qsl, urlsplit

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"


def register(value: str | None) -> None:
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def register_url(url: str) -> None:
    """A robot URL's path and query are its credentials (Slack hooks, access_token=, key=)."""
    parts = urlsplit(url)
    register(url)
    if parts.path.strip("/"):
        for segment in parts.path.split("/"):
            if len(segment) >= 16:
                register(segment)
    if parts.query:
        register(parts.query)
        for _, value in parse_qsl(parts.query):
            register(value)


def redact(text: str) -> str:
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_installed = False


def install_log_filter() -> None:
    """Put the filter on the loggers that print URLs (urllib3 at DEBUG) and on our own."""
    global _installed
    if _installed:
        return
    _installed = True
    for name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3", "requests", "riskcockpit.delivery",
                 "riskcockpit.notifier", "riskcockpit.alerting"):
        logging.getLogger(name).addFilter(SecretFilter())
