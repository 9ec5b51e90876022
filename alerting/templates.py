"""What a notification says: tier, entity, score, top reasons and a link to the cockpit.

One summary feeds every format (JSON webhook, Slack mrkdwn, WeCom / DingTalk / Feishu
markdown, plain text). Chat messages list at most ``MAX_LINES`` alerts and say how many more
there are; the JSON webhook lists up to the receiver's ``max_alerts``. Rendering is a pure
function of the job, so a retried notification carries the same body.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from riskcockpit.ground.durations import format_duration
from riskcockpit.ground.tiers import TIER_NAMES

MAX_LINES = 10

TEXT = {
    "en": {
        "tiers": TIER_NAMES,
        "firing": "{n} new alert(s)", "repeat": "{n} open alert(s), still not acknowledged",
        "escalation": "ESCALATION: {n} alert(s) not acknowledged within {sla}",
        "on": "on", "accounts": "{n} accounts", "account": "account {a}",
        "score": "score", "reasons": "reasons", "open": "Open in cockpit", "more": "… and {n} more",
        "open_in_group": "{n} open in this group",
    },
    "zh": {
        "tiers": {1: "关注", 2: "审查", 3: "严重"},
        "firing": "{n} 条新预警", "repeat": "{n} 条预警仍未确认",
        "escalation": "升级：{n} 条预警超过 {sla} 未确认",
        "on": "", "accounts": "{n} 个账户", "account": "账户 {a}",
        "score": "评分", "reasons": "原因", "open": "在驾驶舱中查看", "more": "… 另有 {n} 条",
        "open_in_group": "本组共 {n} 条未处理",
    },
}


def tier_name(tier: int, language: str = "en") -> str:
    return TEXT[language]["tiers"].get(int(tier), str(tier))


def link(base: str, alert: dict[str, Any] | None = None, account: str | None = None) -> str:
    base = base.rstrip("/")
    params = {}
    if alert is not None:
        params = {"account": alert.get("account_id", ""), "alert": alert.get("alert_id", "")}
    elif account:
        params = {"account": account}
    return f"{base}/?{urlencode(params)}" if params else f"{base}/"


def _amount(alert: dict[str, Any]) -> str:
    amount = alert.get("amount")
    try:
        shown = f"{float(amount):,.2f}"
    except (TypeError, ValueError):
        shown = str(amount or "")
    return f"{shown} {alert.get('currency') or ''}".strip()


def _score(alert: dict[str, Any]) -> str:
    try:
        return f"{float(alert.get('score')):.1f}"
    except (TypeError, ValueError):
        return str(alert.get("score"))


class Message:
    """The parts of one notification, in one language, ready for any format."""

    def __init__(self, job: dict[str, Any], cockpit_url: str, top_reasons: int = 3, language: str = "en"):
        self.job = job
        self.base = cockpit_url.rstrip("/")
        self.top = top_reasons
        self.t = TEXT[language]
        self.language = language
        self.alerts = job.get("alerts") or []
        accounts = sorted({a.get("account_id", "") for a in self.alerts})
        self.account = accounts[0] if len(accounts) == 1 else None
        if self.account:
            self.entity = self.t["account"].format(a=self.account)
        else:
            self.entity = self.t["accounts"].format(n=len(accounts))
        self.tier = int(job.get("tier") or 0)
        self.count = len(job.get("alert_ids") or self.alerts)
        if self.count == 1 and self.alerts:
            self.link = link(self.base, self.alerts[0])
        else:
            self.link = link(self.base, account=self.account)

    @property
    def title(self) -> str:
        tier = f"[{tier_name(self.tier, self.language).upper()}]"
        kind = self.job.get("kind", "firing")
        if kind == "escalation":
            sla = self.job.get("sla_seconds")
            what = self.t["escalation"].format(n=self.count, sla=format_duration(sla) if sla else "SLA")
        else:
            what = self.t[kind if kind in ("firing", "repeat") else "firing"].format(n=self.count)
        on = f" {self.t['on']} " if self.t["on"] else " · "
        return f"{tier} {what}{on}{self.entity}"

    def alert_line(self, alert: dict[str, Any]) -> str:
        parts = [f"T{alert.get('tier')} {tier_name(alert.get('tier') or 0, self.language)}",
                 f"{self.t['score']} {_score(alert)}", _amount(alert), alert.get("channel") or "",
                 alert.get("country") or "", str(alert.get("ts") or "")]
        return f"{alert.get('account_id')} · " + " · ".join(p for p in parts if p)

    def reasons(self, alert: dict[str, Any]) -> list[str]:
        out = []
        for reason in (alert.get("reasons") or [])[: self.top]:
            contribution = reason.get("contribution")
            points = f" (+{float(contribution):.0f})" if isinstance(contribution, int | float) else ""
            text = f": {reason['reason']}" if reason.get("reason") else ""
            out.append(f"{reason.get('indicator')}{points}{text}")
        return out

    @property
    def footer(self) -> str:
        extra = []
        if len(self.alerts) > MAX_LINES or self.job.get("truncated"):
            extra.append(self.t["more"].format(n=self.count - min(len(self.alerts), MAX_LINES)))
        open_alerts = self.job.get("open_alerts")
        if open_alerts and open_alerts > self.count:
            extra.append(self.t["open_in_group"].format(n=open_alerts))
        return " · ".join(extra)

    def markdown(self, bold_title: bool = True) -> str:
        """Markdown that WeCom, DingTalk and Feishu all render (no tables, no HTML)."""
        lines = [f"**{self.title}**" if bold_title else self.title, ""]
        for alert in self.alerts[:MAX_LINES]:
            lines.append(f"- [{self.alert_line(alert)}]({link(self.base, alert)})")
            lines += [f"  - {r}" for r in self.reasons(alert)]
        if self.footer:
            lines += ["", self.footer]
        lines += ["", f"[{self.t['open']}]({self.link})"]
        return "\n".join(lines)

    def slack(self) -> str:
        lines = [f"*{self.title}*"]
        for alert in self.alerts[:MAX_LINES]:
            lines.append(f"• <{link(self.base, alert)}|{self.alert_line(alert)}>")
            lines += [f"    ◦ {r}" for r in self.reasons(alert)]
        if self.footer:
            lines.append(self.footer)
        lines.append(f"<{self.link}|{self.t['open']}>")
        return "\n".join(lines)

    def plain(self) -> str:
        lines = [self.title]
        for alert in self.alerts[:MAX_LINES]:
            lines.append(f"- {self.alert_line(alert)}")
            lines += [f"    {r}" for r in self.reasons(alert)]
        if self.footer:
            lines.append(self.footer)
        lines.append(f"{self.t['open']}: {self.link}")
        return "\n".join(lines)


def fit(text: str, limit_bytes: int, suffix: str = "\n…") -> str:
    """Cut to a platform's byte limit without splitting a UTF-8 character."""
    data = text.encode()
    if len(data) <= limit_bytes:
        return text
    return data[: limit_bytes - len(suffix.encode())].decode(errors="ignore") + suffix
