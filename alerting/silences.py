"""Silences: people mute notifications for alerts matching some labels, for a while, with a reason.

A silence travels as events on the compacted topic ``risk.silences``, keyed by silence id; the
value is always the whole silence at its newest version, so compaction keeps the current state
and the sink's ``silences`` table keeps every change (who, when, why). The notifier folds the
events into a ``SilenceSet``.

A silence mutes an alert's notification while it is active (``starts_at <= now < ends_at``);
the alert stays open in the cockpit. Alerts are events, not conditions that keep firing, so an
alert muted when its group was flushed is not announced later when the silence ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from riskcockpit.alerting.matchers import Matcher, all_match


def _time(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass
class Silence:
    silence_id: str
    version: int
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    changed_by: str
    changed_at: datetime
    event: str = "created"
    change_comment: str = ""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: datetime) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: dict[str, str], now: datetime) -> bool:
        return self.active(now) and all_match(self.matchers, labels)

    def to_event(self) -> dict[str, Any]:
        return {
            "event_id": uuid.uuid4().hex,
            "silence_id": self.silence_id,
            "version": self.version,
            "event": self.event,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at),
            "created_by": self.created_by,
            "comment": self.comment,
            "changed_by": self.changed_by,
            "changed_at": _iso(self.changed_at),
            "change_comment": self.change_comment,
        }

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Silence:
        return cls(
            silence_id=str(event["silence_id"]),
            version=int(event.get("version", 1)),
            matchers=[Matcher.parse(m) for m in event["matchers"]],
            starts_at=_time(event["starts_at"]),
            ends_at=_time(event["ends_at"]),
            created_by=str(event["created_by"]),
            comment=str(event["comment"]),
            changed_by=str(event.get("changed_by") or event["created_by"]),
            changed_at=_time(event.get("changed_at") or event["starts_at"]),
            event=str(event.get("event", "created")),
            change_comment=str(event.get("change_comment", "")),
        )


def new_silence(matchers: list[str], author: str, comment: str, ends_at: datetime,
                starts_at: datetime | None = None, now: datetime | None = None) -> Silence:
    """Validate and build a silence; ValueError says what is missing."""
    now = now or datetime.now(UTC)
    starts_at = _time(starts_at) if starts_at else now
    ends_at = _time(ends_at)
    if not author or not author.strip():
        raise ValueError("a silence needs an author (who is muting)")
    if not comment or not comment.strip():
        raise ValueError("a silence needs a comment (why it is muted)")
    if not matchers:
        raise ValueError("a silence needs at least one matcher, e.g. account_id=\"A42\"")
    parsed = [Matcher.parse(m) for m in matchers]
    if all(m.matches({}) for m in parsed):
        raise ValueError("these matchers also match alerts without such labels; a silence must name "
                         "something, e.g. account_id=\"A42\"")
    if ends_at <= starts_at:
        raise ValueError("the silence would end before it starts")
    if ends_at <= now:
        raise ValueError("the silence would already be over")
    return Silence(silence_id=uuid.uuid4().hex[:16], version=1, matchers=parsed, starts_at=starts_at,
                   ends_at=ends_at, created_by=author.strip(), comment=comment.strip(), changed_by=author.strip(),
                   changed_at=now)


def expired(silence: Silence, by: str, now: datetime | None = None, comment: str = "") -> Silence:
    now = now or datetime.now(UTC)
    if not by or not by.strip():
        raise ValueError("say who expires the silence")
    return Silence(silence_id=silence.silence_id, version=silence.version + 1, matchers=silence.matchers,
                   starts_at=min(silence.starts_at, now), ends_at=min(silence.ends_at, now),
                   created_by=silence.created_by, comment=silence.comment, changed_by=by.strip(), changed_at=now,
                   event="expired", change_comment=comment)


class SilenceSet:
    """The current version of every silence, folded from events in any order."""

    def __init__(self):
        self.by_id: dict[str, Silence] = {}

    def apply(self, event: dict[str, Any]) -> Silence | None:
        silence = Silence.from_event(event)
        known = self.by_id.get(silence.silence_id)
        if known is not None and (known.version, known.changed_at) >= (silence.version, silence.changed_at):
            return None  # an older change replayed: the newer one stands
        self.by_id[silence.silence_id] = silence
        return silence

    def muting(self, labels: dict[str, str], now: datetime) -> list[str]:
        return [s.silence_id for s in self.by_id.values() if s.mutes(labels, now)]

    def prune(self, now: datetime, keep_seconds: float) -> None:
        for sid in [sid for sid, s in self.by_id.items() if (now - s.ends_at).total_seconds() > keep_seconds]:
            del self.by_id[sid]

    def find(self, prefix: str) -> Silence:
        hits = [s for sid, s in self.by_id.items() if sid.startswith(prefix)]
        if not hits:
            raise KeyError(f"no silence {prefix!r}")
        if len(hits) > 1:
            raise KeyError(f"{prefix!r} is ambiguous: {', '.join(s.silence_id for s in hits)}")
        return hits[0]

    def listed(self, now: datetime, include_expired: bool = False) -> list[Silence]:
        items = [s for s in self.by_id.values() if include_expired or s.state(now) != "expired"]
        return sorted(items, key=lambda s: (s.starts_at, s.silence_id))
