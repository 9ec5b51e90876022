"""``config/alerting.yaml``: routes, receivers, inhibition, SLAs; validated at start.

Every problem is reported as ``FILE:LINE: dotted.field: what is wrong``, all problems at once,
as for every configuration file (:mod:`riskcockpit.ground.yamlfile`).

Secrets never live in this file: receivers name environment variables (``url_env``,
``secret_env``, ``sign_secret_env``) and only the names are validated here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from riskcockpit.alerting.matchers import Matcher
from riskcockpit.ground.durations import parse_duration
from riskcockpit.ground.yamlfile import ConfigError, describe_errors, duplicate_errors, parse_yaml, read_text

FILE_NAME = "alerting.yaml"
RECEIVER_TYPES = ("webhook", "slack", "wecom", "dingtalk", "feishu")

Duration = Annotated[float, BeforeValidator(parse_duration)]
MatcherField = Annotated[Matcher, BeforeValidator(lambda v: v if isinstance(v, Matcher) else Matcher.parse(v))]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)


class RetryPolicy(_Model):
    max_attempts: int = Field(8, ge=1, le=1000, description="attempts before the dead-letter topic")
    initial_backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    multiplier: float = Field(2.0, ge=1.0)
    # A Retry-After longer than this is cut short: a receiver must not park a notification for days.
    max_retry_after: Duration = 600.0


class RateLimit(_Model):
    requests: float = Field(gt=0, description="requests allowed per `per`")
    per: Duration = 1.0
    burst: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _positive_period(self):
        if self.per <= 0:
            raise ValueError("per must be longer than 0s")
        return self


# What the chat platforms document for a group robot; a receiver may set its own.
DEFAULT_RATE_LIMITS = {
    "slack": RateLimit(requests=1, per=1, burst=3),
    "wecom": RateLimit(requests=20, per=60, burst=5),
    "dingtalk": RateLimit(requests=20, per=60, burst=5),
    "feishu": RateLimit(requests=5, per=1, burst=5),
}


class ReceiverConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["webhook", "slack", "wecom", "dingtalk", "feishu"]
    url: str | None = Field(None, description="endpoint; chat robot URLs carry a token, prefer url_env")
    url_env: EnvName | None = None
    secret_env: EnvName | None = Field(None, description="HMAC key for X-Riskcockpit-Signature")
    sign_secret_env: EnvName | None = Field(None, description="DingTalk / Feishu robot signing secret")
    format: Literal["card", "text"] = Field("card", description="Feishu: interactive card or plain text")
    language: Literal["en", "zh"] = "en"
    timeout: Duration = 5.0
    concurrency: int | None = Field(None, ge=1, le=64, description="requests in flight at once; "
                                    "default 4 for webhook, 1 for chat robots (they keep order and rate)")
    retry: RetryPolicy | None = None
    rate_limit: RateLimit | None = None
    cockpit_url: str | None = None
    top_reasons: int = Field(3, ge=0, le=20)
    max_alerts: int = Field(500, ge=1, description="alerts listed in one webhook body")
    headers: dict[str, str] = Field(default_factory=dict, description="extra static headers, no secrets")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            # Only the part before the query is shown: a query string may carry a token.
            raise ValueError(f"must be an http:// or https:// URL, not {value.split('?')[0]!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of url and url_env")
        if self.type == "webhook" and not self.secret_env:
            raise ValueError("a webhook receiver needs secret_env: the variable holding its signing secret")
        if self.sign_secret_env and self.type not in ("dingtalk", "feishu"):
            raise ValueError("sign_secret_env is DingTalk's and Feishu's own signature; this is a "
                             f"{self.type} receiver (use secret_env)")
        for header in self.headers:
            if header.lower().startswith("x-riskcockpit-"):
                raise ValueError(f"headers: {header} is set by the notifier itself")
        return self

    def env_names(self) -> list[str]:
        return [n for n in (self.url_env, self.secret_env, self.sign_secret_env) if n]

    def effective_concurrency(self) -> int:
        return self.concurrency or (4 if self.type == "webhook" else 1)

    def effective_rate_limit(self) -> RateLimit | None:
        return self.rate_limit or DEFAULT_RATE_LIMITS.get(self.type)


class RouteConfig(_Model):
    name: str | None = None
    matchers: list[MatcherField] = Field(default_factory=list)
    receivers: list[str] | None = None
    receiver: str | None = Field(None, description="one receiver; the same as receivers: [name]")
    continue_: bool = Field(False, alias="continue")
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    escalation: list[str] | None = Field(None, description="receivers told when an alert outlives its SLA")
    routes: list[RouteConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_spelling(self):
        if self.receiver is not None and self.receivers is not None:
            raise ValueError("use receiver or receivers, not both")
        if self.receiver is not None:
            object.__setattr__(self, "receivers", [self.receiver])
        return self


class InhibitRule(_Model):
    source_matchers: list[MatcherField] = Field(min_length=1)
    target_matchers: list[MatcherField] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


class NotifierConfig(_Model):
    group_id: str = "riskcockpit-notifier"
    # An alert nobody acknowledges stops repeating, inhibiting and escalating after this long;
    # it also bounds memory and how far back a restart replays.
    alert_ttl: Duration = 86400.0
    max_alerts_per_group: int = Field(10000, ge=1)
    # Beyond this many open alerts the oldest ones with nothing left to do (announced, no
    # escalation pending) are let go early: memory stays bounded whatever the alert rate.
    max_open_alerts: int = Field(200_000, ge=100)
    commit_interval: Duration = 1.0


class DeliveryConfig(_Model):
    group_id: str = "riskcockpit-delivery"
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    max_in_flight: int = Field(1000, ge=1, description="jobs read ahead of the slowest receiver")


class AlertingConfig(_Model):
    cockpit_url: str | None = Field(None, description="links in messages; default settings.cockpit.url")
    route: RouteConfig
    receivers: list[ReceiverConfig] = Field(min_length=1)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    sla: dict[Literal["tier1", "tier2", "tier3"], Duration] = Field(default_factory=dict)
    notifier: NotifierConfig = Field(default_factory=NotifierConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    source: str = Field("", exclude=True)

    def receiver(self, name: str) -> ReceiverConfig:
        for item in self.receivers:
            if item.name == name:
                return item
        raise KeyError(name)

    def sla_for(self, tier: int) -> float | None:
        value = self.sla.get(f"tier{tier}")
        return value if value else None

    def retry_for(self, receiver: ReceiverConfig) -> RetryPolicy:
        return receiver.retry or self.delivery.retry

    def missing_env(self, environ: dict[str, str] | None = None) -> list[str]:
        environ = os.environ if environ is None else environ
        return sorted({n for r in self.receivers for n in r.env_names() if not environ.get(n)})


# ---------------------------------------------------------------- checks across fields

def _semantic_errors(config: AlertingConfig) -> list[dict]:
    errors: list[dict] = []
    names = [r.name for r in config.receivers]
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            errors.append({"loc": ("receivers", i, "name"), "msg": f"receiver {name!r} is defined twice"})
        seen.add(name)
    known = set(names)
    root = config.route
    if root.matchers:
        errors.append({"loc": ("route", "matchers"), "msg": "the root route matches every alert; "
                                                            "put matchers on child routes"})
    if not root.receivers:
        errors.append({"loc": ("route",), "msg": "the root route needs receivers: where unmatched alerts go"})

    def walk(route: RouteConfig, loc: tuple) -> None:
        for key in ("receivers", "escalation"):
            for j, name in enumerate(getattr(route, key) or []):
                if name not in known:
                    where = loc + (("receiver",) if key == "receivers" and route.receiver else (key, j))
                    errors.append({"loc": where, "msg": f"unknown receiver {name!r}; defined: {', '.join(names)}"})
        for value, field in ((route.group_interval, "group_interval"), (route.repeat_interval, "repeat_interval")):
            if value is not None and value <= 0:
                errors.append({"loc": loc + (field,), "msg": f"{field} must be longer than 0s"})
        for j, child in enumerate(route.routes):
            walk(child, loc + ("routes", j))

    walk(root, ("route",))
    for tier_key, value in config.sla.items():
        if value <= 0:
            errors.append({"loc": ("sla", tier_key), "msg": "an SLA must be longer than 0s (leave it out for none)"})
    return errors


def parse(text: str, source: str = FILE_NAME) -> AlertingConfig:
    """Validate a configuration; raise ConfigError listing every problem with file and line."""
    data = parse_yaml(text, source)
    lines = data.lines
    errors = duplicate_errors(data)
    try:
        config = AlertingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(source, errors + exc.errors(), lines)) from None
    errors += _semantic_errors(config)
    if errors:
        raise ConfigError(describe_errors(source, errors, lines))
    config.source = source
    return config


def load(path: str | os.PathLike) -> AlertingConfig:
    return parse(read_text(path), str(path))


def default_path(config_dir: Path) -> Path:
    return Path(config_dir) / FILE_NAME


def warnings(config: AlertingConfig, environ: dict[str, str] | None = None) -> list[str]:
    """What is valid but probably wrong: unset secrets, tokens written into the file."""
    out = [f"{config.source}: environment variable {name} is not set (a receiver needs it)"
           for name in config.missing_env(environ)]
    for receiver in config.receivers:
        if receiver.url and receiver.type != "webhook" and ("?" in receiver.url or "/hooks/" in receiver.url):
            out.append(f"{config.source}: receivers.{receiver.name}.url: a chat robot URL carries its access "
                       "token; keep it out of the repository with url_env")
    return out
