"""Receivers: how a notification job becomes an HTTP request, and how a reply is judged.

Kinds: a generic JSON webhook, Slack-compatible incoming webhooks, WeCom (企业微信) group
robots, DingTalk (钉钉) custom robots and Feishu (飞书) bots. Every request carries the
``X-Riskcockpit-*`` headers; the chat platforms ignore them, a proxy in front can check them.

URLs given by ``url_env`` and every secret are read from the environment once, registered
with ``alerting.redact`` and never put in a log line or an audit record.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from riskcockpit.alerting import redact
from riskcockpit.alerting.backoff import parse_retry_after
from riskcockpit.alerting.config import ReceiverConfig
from riskcockpit.alerting.signing import dingtalk_sign, feishu_sign, signed_headers
from riskcockpit.alerting.templates import Message, fit, link, tier_name

USER_AGENT = "riskcockpit-notifier/1"


class MissingSecret(RuntimeError):
    pass


@dataclass
class Request:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Verdict:
    ok: bool
    retryable: bool
    error: str = ""
    retry_after: float | None = None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params, quote_via=quote)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class Receiver:
    """The generic JSON webhook; the chat kinds override ``payload`` and ``judge``."""

    def __init__(self, config: ReceiverConfig, cockpit_url: str, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        self.config = config
        self.name = config.name
        self.type = config.type
        self.cockpit_url = (config.cockpit_url or cockpit_url).rstrip("/")
        self._url = config.url or self._env(environ, config.url_env)
        if config.url_env:
            redact.register_url(self._url)
        self._secret = self._env(environ, config.secret_env) if config.secret_env else None
        self._sign_secret = self._env(environ, config.sign_secret_env) if config.sign_secret_env else None
        redact.register(self._secret)
        redact.register(self._sign_secret)

    def _env(self, environ: Mapping[str, str], name: str) -> str:
        value = environ.get(name)
        if not value:
            raise MissingSecret(f"receiver {self.name}: environment variable {name} is not set")
        return value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def message(self, job: dict[str, Any]) -> Message:
        return Message(job, self.cockpit_url, self.config.top_reasons, self.config.language)

    def payload(self, job: dict[str, Any], now: float) -> dict[str, Any]:
        message = self.message(job)
        alerts = [dict(a, url=link(self.cockpit_url, a), tier_name=tier_name(a.get("tier") or 0))
                  for a in job.get("alerts") or []]
        body = {key: job[key] for key in ("kind", "receiver", "group_key", "group_labels", "tier", "alert_ids",
                                          "truncated", "open_alerts", "sequence", "created_at") if key in job}
        body.update(version="1", id=job["notification_id"], tier_name=tier_name(job.get("tier") or 0),
                    title=message.title, text=message.plain(), alerts=alerts, cockpit_url=message.link)
        if job.get("kind") == "escalation":
            body.update(sla_seconds=job.get("sla_seconds"), periods=job.get("periods"))
        return body

    def url(self, now: float) -> str:
        return self._url

    def request(self, job: dict[str, Any], now: float | None = None) -> Request:
        now = time.time() if now is None else now
        body = _dumps(self.payload(job, now))
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   **self.config.headers, **signed_headers(self._secret, body, job["notification_id"], int(now))}
        return Request(self.url(now), headers, body)

    def judge(self, status: int, headers: Mapping[str, str], text: str) -> Verdict:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if 200 <= status < 300:
            return Verdict(True, False)
        error = f"HTTP {status}" + (f": {redact.redact(text[:200])}" if text else "")
        if status in (408, 425, 429) or status >= 500:
            return Verdict(False, True, error, retry_after)
        return Verdict(False, False, error, retry_after)

    def _judge_code(self, status: int, headers: Mapping[str, str], text: str, code_keys: tuple[str, ...],
                    message_keys: tuple[str, ...], throttled: set[int]) -> Verdict:
        verdict = Receiver.judge(self, status, headers, text)
        if not verdict.ok:
            return verdict
        try:
            reply = json.loads(text) if text else {}
        except ValueError:
            return verdict
        if not isinstance(reply, dict):
            return verdict
        code = next((reply[k] for k in code_keys if k in reply), 0)
        if code in (0, None, "0"):
            return verdict
        detail = next((reply[k] for k in message_keys if k in reply), "")
        error = redact.redact(f"{self.type} error {code}: {detail}"[:300])
        return Verdict(False, int(code) in throttled, error, verdict.retry_after)


class SlackReceiver(Receiver):
    def payload(self, job, now):
        text = self.message(job).slack()
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": fit(text, 3000)}}]}


class WeComReceiver(Receiver):
    # 45009: API call frequency over the limit (the robot allows 20 messages a minute).
    THROTTLED = {45009, 45033}

    def payload(self, job, now):
        return {"msgtype": "markdown", "markdown": {"content": fit(self.message(job).markdown(), 4096)}}

    def judge(self, status, headers, text):
        return self._judge_code(status, headers, text, ("errcode",), ("errmsg",), self.THROTTLED)


class DingTalkReceiver(Receiver):
    # 130101: sending too fast; 660026: too many messages today.
    THROTTLED = {130101, 130102}

    def payload(self, job, now):
        message = self.message(job)
        return {"msgtype": "markdown",
                "markdown": {"title": fit(message.title, 200), "text": fit(message.markdown(), 18000)}}

    def url(self, now):
        if not self._sign_secret:
            return self._url
        timestamp = int(now * 1000)
        sign = dingtalk_sign(self._sign_secret, timestamp)
        return _with_query(self._url, {"timestamp": str(timestamp), "sign": sign})

    def judge(self, status, headers, text):
        return self._judge_code(status, headers, text, ("errcode",), ("errmsg",), self.THROTTLED)


class FeishuReceiver(Receiver):
    # 11232: the bot's frequency limit; 9499: too many requests.
    THROTTLED = {11232, 9499}

    def payload(self, job, now):
        message = self.message(job)
        if self.config.format == "text":
            body: dict[str, Any] = {"msg_type": "text", "content": {"text": fit(message.plain(), 30000)}}
        else:
            colour = {3: "red", 2: "orange", 1: "yellow"}.get(message.tier, "blue")
            body = {"msg_type": "interactive", "card": {
                "config": {"wide_screen_mode": True},
                "header": {"title": {"tag": "plain_text", "content": fit(message.title, 200)}, "template": colour},
                "elements": [
                    {"tag": "markdown", "content": fit(message.markdown(bold_title=False).split("\n", 2)[-1], 28000)},
                    {"tag": "action", "actions": [{"tag": "button", "type": "primary", "url": message.link,
                                                   "text": {"tag": "plain_text", "content": message.t["open"]}}]},
                ]}}
        if self._sign_secret:
            # Feishu checks the signature inside the body, against a timestamp no older than an hour.
            timestamp = int(now)
            body.update(timestamp=str(timestamp), sign=feishu_sign(self._sign_secret, timestamp))
        return body

    def judge(self, status, headers, text):
        return self._judge_code(status, headers, text, ("code", "StatusCode"), ("msg", "StatusMessage"),
                                self.THROTTLED)


KINDS = {"webhook": Receiver, "slack": SlackReceiver, "wecom": WeComReceiver, "dingtalk": DingTalkReceiver,
         "feishu": FeishuReceiver}


def build(config: ReceiverConfig, cockpit_url: str, environ: Mapping[str, str] | None = None) -> Receiver:
    return KINDS[config.type](config, cockpit_url, environ)
