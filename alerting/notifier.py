"""The notifier: alerts, actions and silences in; notification jobs out.

``Notifier`` is plain Python driven with explicit times, so tests run it without Kafka or
sleeping. ``NotifierService`` is the Kafka shell: it feeds the notifier, produces the jobs to
``risk.notifications`` (keyed by receiver and group) and only then commits the ``risk.alerts``
offsets the notifier no longer needs.

An alert holds its offset until every group it belongs to has dealt with it (sent or muted)
and, if its tier has an SLA and its route an escalation receiver, until it is acknowledged or
outlives ``notifier.alert_ttl``. After a crash the uncommitted alerts are replayed; the
notifier first reads back its own recent jobs from ``risk.notifications`` so that alerts
already announced are not announced again. What can still repeat after a crash: a job produced
just before the crash that the read-back misses is sent again, and a group rebuilt from a
different set of alerts gets a different idempotency key.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from riskcockpit.alerting.config import AlertingConfig
from riskcockpit.alerting.grouping import Group, Grouper
from riskcockpit.alerting.inhibition import Inhibitor
from riskcockpit.alerting.labels import alert_id as id_of
from riskcockpit.alerting.labels import alert_labels
from riskcockpit.alerting.routing import Route, Router
from riskcockpit.alerting.signing import notification_id
from riskcockpit.alerting.silences import SilenceSet

log = logging.getLogger("riskcockpit.notifier")

TOP_REASONS = 5


def _epoch(value: Any, default: float) -> float:
    if isinstance(value, int | float):
        return float(value) / (1000 if value > 1e11 else 1)
    try:
        moment = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return default
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def alert_summary(alert: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """What a notification says about one alert: enough to act on, small enough for chat."""
    reasons = sorted((r for r in alert.get("reasons") or [] if isinstance(r, dict)),
                     key=lambda r: -float(r.get("contribution") or 0))
    return {
        "alert_id": labels["alert_id"],
        "account_id": labels["account_id"],
        "tier": int(alert.get("tier") or 0),
        "score": alert.get("score"),
        "amount": alert.get("amount"),
        "currency": labels["currency"],
        "channel": labels["channel"],
        "country": labels["country"],
        "scenario": labels["scenario"],
        "segment": labels["segment"],
        "ts": alert.get("ts"),
        "scored_at": alert.get("scored_at"),
        "reasons": [{"indicator": r.get("indicator"), "reason": r.get("reason") or r.get("text") or "",
                     "contribution": r.get("contribution"), "value": r.get("value")} for r in reasons[:TOP_REASONS]],
    }


@dataclass
class Tracked:
    id: str
    summary: dict[str, Any]
    labels: dict[str, str]
    tier: int
    scored: float
    expires: float
    token: Hashable | None
    groups: list[tuple[str, str]] = field(default_factory=list)
    waiting: set[tuple[str, str]] = field(default_factory=set)
    escalations: list[tuple[Route, str]] = field(default_factory=list)  # (route, escalation receiver)
    sla: float | None = None
    next_period: int = 0

    @property
    def escalating(self) -> bool:
        if not self.escalations or self.sla is None:
            return False
        return self.scored + self.next_period * self.sla < self.expires


class Notifier:
    def __init__(self, config: AlertingConfig):
        self.config = config
        self.router = Router(config)
        self.inhibitor = Inhibitor(config.inhibit_rules)
        self.silences = SilenceSet()
        self.grouper = Grouper()
        self.alerts: dict[str, Tracked] = {}
        self.closed: dict[str, float] = {}  # acknowledged/closed/expired ids -> when, so replays stay closed
        self.sent_before: dict[tuple[str, str], dict[str, float]] = {}  # read back from risk.notifications
        self.escalated_before: dict[str, int] = {}
        self.max_alerts = {r.name: r.max_alerts for r in config.receivers}
        self._released: list[Hashable] = []
        self._escalations: list[tuple[float, str, int]] = []
        self._expiry: list[tuple[float, str]] = []
        self._last_prune = 0.0
        self.stats = {"alerts": 0, "duplicates": 0, "closed": 0, "muted": 0, "jobs": 0, "evicted": 0}

    # ---------------------------------------------------------------- inputs

    def add_alert(self, alert: dict[str, Any], now: float, token: Hashable | None = None) -> None:
        """Track a new alert; raises ValueError, before anything changes, for one that names no
        alert or whose tier is not 1, 2 or 3 (the caller dead-letters it)."""
        try:
            aid = id_of(alert)
        except KeyError:
            raise ValueError("names no alert: alert_id or tx_id required") from None
        tier = alert.get("tier")
        if type(tier) is not int or tier not in (1, 2, 3):
            raise ValueError(f"tier: {tier!r} is not 1, 2 or 3")
        known = self.alerts.get(aid)
        if known is not None or aid in self.closed:
            self.stats["duplicates"] += 1
            if known is not None and known.token is not None and token is not None:
                # Still needed (not yet announced, or may escalate): hold the newest position instead.
                # After a rebalance the old position is forgotten, and a re-publication is later anyway.
                if known.token != token:
                    self._release(known.token)
                known.token = token
            else:
                self._release(token)
            return
        self.stats["alerts"] += 1
        labels = alert_labels(alert)
        scored = min(_epoch(alert.get("scored_at"), now), now)
        tracked = Tracked(aid, alert_summary(alert, labels), labels, tier, scored,
                          expires=scored + self.config.notifier.alert_ttl, token=token)
        self.alerts[aid] = tracked
        self.inhibitor.opened(aid, labels)
        for route in self.router.match(labels):
            for receiver in route.receivers:
                key = route.group_key(labels)
                sent = aid in self.sent_before.get((receiver, key), ())
                group = self.grouper.add(route, receiver, labels, aid, now, already_sent=sent)
                tracked.groups.append((receiver, key))
                if not sent:
                    tracked.waiting.add((receiver, key))
                self._bound(group)
            tracked.escalations += [(route, name) for name in route.escalation]
        tracked.sla = self.config.sla_for(tier)
        if tracked.escalations and tracked.sla:
            # An alert that is already late (replay, outage) escalates at once, for the current period only.
            period = max(1, int((now - scored) // tracked.sla), self.escalated_before.get(aid, 0) + 1)
            tracked.next_period = period
            if tracked.escalating:
                heapq.heappush(self._escalations, (scored + period * tracked.sla, aid, period))
        heapq.heappush(self._expiry, (tracked.expires, aid))
        self._maybe_release(tracked)
        if len(self.alerts) > self.config.notifier.max_open_alerts:
            self._evict(now)

    def _evict(self, now: float) -> None:
        busy, looked = [], 0
        while self._expiry and len(self.alerts) > self.config.notifier.max_open_alerts and looked < 1000:
            entry = heapq.heappop(self._expiry)
            looked += 1
            tracked = self.alerts.get(entry[1])
            if tracked is None:
                continue
            if tracked.waiting or tracked.escalating:
                busy.append(entry)
                continue
            self.stats["evicted"] += 1
            self.closed[tracked.id] = now
            self._close(tracked.id)
        for entry in busy:
            heapq.heappush(self._expiry, entry)

    def apply_action(self, action: dict[str, Any], now: float) -> None:
        """Any action (acknowledge, disposition) means a person has the alert: it is no longer open."""
        aid = str(action.get("alert_id") or "")
        if not aid:
            return
        self.closed[aid] = now
        if aid in self.alerts:
            self.stats["closed"] += 1
            self._close(aid)

    def apply_silence(self, event: dict[str, Any]) -> None:
        silence = self.silences.apply(event)
        if silence is not None:
            log.info("silence %s %s by %s until %s: %s", silence.silence_id, silence.event, silence.changed_by,
                     silence.ends_at.isoformat(timespec="seconds"), ", ".join(str(m) for m in silence.matchers))

    def remember(self, job: dict[str, Any]) -> None:
        """A job this notifier produced before a restart: its alerts were already announced."""
        created = _epoch(job.get("created_at"), time.time())
        if job.get("kind") == "escalation":
            for aid, period in (job.get("periods") or {}).items():
                self.escalated_before[aid] = max(self.escalated_before.get(aid, 0), int(period))
            return
        sent = self.sent_before.setdefault((job["receiver"], job["group_key"]), {})
        for aid in job.get("alert_ids") or []:
            sent[aid] = created

    # ---------------------------------------------------------------- state changes

    def _close(self, aid: str) -> None:
        tracked = self.alerts.pop(aid, None)
        if tracked is None:
            return
        self.inhibitor.closed(aid)
        for receiver, key in tracked.groups:
            self.grouper.remove(receiver, key, aid)
        tracked.waiting.clear()
        tracked.escalations = []
        self._release(tracked.token)
        tracked.token = None

    def _release(self, token: Hashable | None) -> None:
        if token is not None:
            self._released.append(token)

    def _maybe_release(self, tracked: Tracked) -> None:
        if tracked.token is not None and not tracked.waiting and not tracked.escalating:
            self._release(tracked.token)
            tracked.token = None

    def _bound(self, group: Group) -> None:
        for aid in group.evict_oldest(self.config.notifier.max_alerts_per_group):
            tracked = self.alerts.get(aid)
            if tracked is not None:
                tracked.waiting.discard((group.receiver, group.key))
                self._maybe_release(tracked)

    def take_released(self) -> list[Hashable]:
        """Input positions no longer needed; commit them only after the jobs of the last flush are produced."""
        out, self._released = self._released, []
        return out

    def muted(self, tracked: Tracked, now_dt: datetime) -> list[str]:
        """Why this alert must not be announced now: silence ids and inhibiting alert ids."""
        return self.silences.muting(tracked.labels, now_dt) + self.inhibitor.inhibited_by(tracked.id, tracked.labels)

    # ---------------------------------------------------------------- output

    def flush(self, now: float) -> list[dict[str, Any]]:
        """The notification jobs due at ``now``."""
        now_dt = datetime.fromtimestamp(now, UTC)
        jobs: list[dict[str, Any]] = []

        def is_muted(aid: str) -> bool:
            tracked = self.alerts.get(aid)
            reasons = self.muted(tracked, now_dt) if tracked else ["closed"]
            if reasons and tracked:
                self.stats["muted"] += 1
                log.debug("alert %s muted by %s", aid, ", ".join(reasons[:5]))
            return bool(reasons)

        for group in self.grouper.due(now):
            result, handled = group.flush(now, is_muted)
            for aid in handled:
                tracked = self.alerts.get(aid)
                if tracked is not None:
                    tracked.waiting.discard((group.receiver, group.key))
                    self._maybe_release(tracked)
            if result is not None:
                jobs.append(self._job(result.kind, group.receiver, group.route, group.key, group.labels,
                                      result.alert_ids, now, open_alerts=len(group.members)))
            self.grouper.reschedule(group)
        jobs += self._escalate(now, now_dt)
        self._expire(now)
        self.stats["jobs"] += len(jobs)
        return jobs

    def _escalate(self, now: float, now_dt: datetime) -> list[dict[str, Any]]:
        due: dict[tuple[str, str], tuple[Route, dict[str, str], dict[str, int]]] = {}
        while self._escalations and self._escalations[0][0] <= now:
            _, aid, period = heapq.heappop(self._escalations)
            tracked = self.alerts.get(aid)
            if tracked is None or tracked.next_period != period:
                continue
            if self.muted(tracked, now_dt):
                log.info("escalation of %s (period %d) muted", aid, period)
            else:
                for route, receiver in tracked.escalations:
                    key = route.group_key(tracked.labels)
                    entry = due.setdefault((receiver, key), (route, route.group_labels(tracked.labels), {}))
                    entry[2][aid] = period
            tracked.next_period = period + 1
            if tracked.escalating:
                heapq.heappush(self._escalations, (tracked.scored + tracked.next_period * tracked.sla, aid,
                                                   tracked.next_period))
            else:
                self._maybe_release(tracked)
        jobs = []
        for (receiver, key), (route, group_labels, periods) in due.items():
            ids = sorted(periods, key=lambda a: self.alerts[a].scored)
            sequence = "escalation:" + ",".join(f"{a}#{periods[a]}" for a in sorted(periods))
            jobs.append(self._job("escalation", receiver, route, key, group_labels, ids, now, sequence=sequence,
                                  periods=periods))
        return jobs

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, aid = heapq.heappop(self._expiry)
            tracked = self.alerts.get(aid)
            if tracked is None:
                continue
            if tracked.waiting:  # a late alert is still announced once before it is let go
                heapq.heappush(self._expiry, (now + 1.0, aid))
                continue
            self.closed[aid] = now
            self._close(aid)
        if now - self._last_prune > 60:
            self._last_prune = now
            horizon = now - self.config.notifier.alert_ttl - 3600
            self.closed = {a: t for a, t in self.closed.items() if t >= horizon}
            for gid in list(self.sent_before):
                kept = {a: t for a, t in self.sent_before[gid].items() if t >= horizon}
                if kept:
                    self.sent_before[gid] = kept
                else:
                    del self.sent_before[gid]
            self.silences.prune(datetime.fromtimestamp(now, UTC), keep_seconds=3600)

    def _job(self, kind: str, receiver: str, route: Route, key: str, group_labels: dict[str, str],
             alert_ids: list[str], now: float, sequence: str | None = None, open_alerts: int | None = None,
             periods: dict[str, int] | None = None) -> dict[str, Any]:
        if sequence is None:
            sequence = "firing" if kind == "firing" else f"repeat:{int(now // route.repeat_interval)}"
        listed = alert_ids[: self.max_alerts.get(receiver, 500)]
        summaries = []
        for aid in listed:
            summary = dict(self.alerts[aid].summary)
            if periods:
                summary["escalation_period"] = periods[aid]
            summaries.append(summary)
        tiers = [self.alerts[a].tier for a in alert_ids if a in self.alerts]
        job = {
            "notification_id": notification_id(receiver, key, alert_ids, sequence),
            "kind": kind,
            "receiver": receiver,
            "route": route.id,
            "route_name": route.name or "",
            "group_key": key,
            "group_labels": group_labels,
            "tier": max(tiers, default=0),
            "alerts": summaries,
            "alert_ids": list(alert_ids),
            "truncated": len(alert_ids) - len(listed),
            "open_alerts": open_alerts if open_alerts is not None else len(alert_ids),
            "sequence": sequence,
            "created_at": _iso(now),
        }
        if kind == "escalation":
            job["periods"] = periods
            job["sla_seconds"] = self.config.sla_for(job["tier"])
        return job

    def next_due(self) -> float | None:
        times = [t for t in (self.grouper.next_due(), self._escalations[0][0] if self._escalations else None,
                             self._expiry[0][0] if self._expiry else None) if t is not None]
        return min(times, default=None)


def job_key(job: dict[str, Any]) -> bytes:
    """Jobs of one receiver and group share a partition, so the delivery loop sees them in order."""
    return f"{job.get('receiver', '')}|{job.get('group_key', '')}".encode()


def encode(job: dict[str, Any]) -> bytes:
    return json.dumps(job, ensure_ascii=False, sort_keys=True).encode()


# ---------------------------------------------------------------- the Kafka shell

class NotifierService:
    """Consumes alerts (own group, offsets committed after the jobs), actions and silences."""

    def __init__(self, config: AlertingConfig, bootstrap: str, partitions: int = 4, clock=time.time):
        self.config = config
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.clock = clock
        self.notifier = Notifier(config)
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def stop(self) -> None:
        self.stopping.set()

    def start_thread(self) -> threading.Thread:
        from riskcockpit.alerting.delivery import keeping_error

        thread = threading.Thread(target=keeping_error(self), name="riskcockpit-notifier", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        from riskcockpit.alerting import bus
        from riskcockpit.alerting.offsets import OffsetTracker
        from riskcockpit.ground import topics
        from riskcockpit.ground.kafka import client_configs, subscribe

        bus.ensure_alerting_topics(self.bootstrap, self.partitions)
        now = self.clock()
        lookback_ms = int((now - self.config.notifier.alert_ttl - 3600) * 1000)
        producer = bus.producer(self.bootstrap)
        # Side inputs are read whole (silences) or from the look-back (actions) by every instance, never
        # committed: actions are keyed by alert, not by account, so no partition of them is "ours".
        side = bus.consumer(self.bootstrap)
        side_parts = bus.assign_from(side, {topics.SILENCES: None, topics.ACTIONS: lookback_ms})
        replay_ms = bus.replay_start_ms(self.bootstrap, self.config.notifier.group_id, topics.ALERTS, lookback_ms)
        remembered = 0
        for job in bus.read_until_end(self.bootstrap, topics.NOTIFICATIONS, since_ms=replay_ms):
            self.notifier.remember(job)
            remembered += 1
        for record in bus.drain(side, side_parts):
            self._side(record, now)
        alerts = KafkaConsumer(
            bootstrap_servers=self.bootstrap, **client_configs(), group_id=self.config.notifier.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
            max_poll_records=2000, **bus.GROUP_TIMEOUTS,
        )
        tracker = OffsetTracker()
        listener = bus.Rebalance(alerts, tracker, since_ms=lookback_ms)
        subscribe(alerts, [topics.ALERTS], listener=listener)
        log.info("notifier consuming %s (group %s); %d silences, %d closed alerts, %d earlier jobs known",
                 topics.ALERTS, self.config.notifier.group_id, len(self.notifier.silences.by_id),
                 len(self.notifier.closed), remembered)
        last_commit = 0.0
        try:
            while not self.stopping.is_set():
                for record in bus.poll_records(side, 0):
                    self._side(record, self.clock())
                due = self.notifier.next_due()
                wait = 0.2 if due is None else min(0.2, max(0.0, due - self.clock()))
                polled = bus.poll_records(alerts, int(wait * 1000))
                listener.position_new()
                if not self.ready.is_set() and alerts.assignment():
                    self.ready.set()  # joined the group and positioned: alerts produced from now on are seen
                for record in polled:
                    tp = TopicPartition(record.topic, record.partition)
                    tracker.add(tp, record.offset)
                    try:
                        alert = json.loads(record.value)
                        if not isinstance(alert, dict):
                            raise ValueError("not a JSON object")
                        self.notifier.add_alert(alert, self.clock(), token=(tp, record.offset))
                    except Exception as exc:  # noqa: BLE001 - one alert must not stop the notifier
                        self._dead_letter(producer, record, exc)
                        tracker.done(tp, record.offset)
                jobs = self.notifier.flush(self.clock())
                if jobs:
                    futures = [producer.send(topics.NOTIFICATIONS, key=job_key(j), value=encode(j)) for j in jobs]
                    producer.flush()
                    for future in futures:
                        future.get(timeout=30)  # raises: nothing is committed for jobs not written
                    for job in jobs:
                        log.info("notification %s %s to %s: %d alert(s), group %s", job["notification_id"][:12],
                                 job["kind"], job["receiver"], len(job["alert_ids"]), job["group_key"])
                for tp, offset in self.notifier.take_released():
                    tracker.done(tp, offset)
                if self.clock() - last_commit >= self.config.notifier.commit_interval:
                    last_commit = self.clock()
                    offsets = {tp: o for tp, o in tracker.committable().items() if tp in alerts.assignment()}
                    if offsets:
                        alerts.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
                        tracker.mark_committed(offsets)
        finally:
            alerts.close(autocommit=False)
            side.close()
            producer.close(timeout=10)

    @staticmethod
    def _dead_letter(producer, record, exc: Exception) -> None:
        """An alert that cannot be read to ``risk.alerts.dlq``, as it was, with the reason; its
        offset is committed only once the broker has it."""
        from riskcockpit.ground import topics

        reason = f"notifier could not read the alert: {type(exc).__name__}: {exc}"
        log.warning("alert at %s-%d@%d dead-lettered: %s", record.topic, record.partition, record.offset, reason)
        producer.send(topics.ALERTS_DLQ, key=record.key, value=record.value,
                      headers=topics.dlq_headers(record.topic, record.partition, record.offset, record.timestamp,
                                                 reason)).get(timeout=30)

    def _side(self, record, now: float) -> None:
        from riskcockpit.ground import topics

        try:
            value = json.loads(record.value) if record.value is not None else None
        except ValueError:
            log.warning("unreadable %s record at %d@%d", record.topic, record.partition, record.offset)
            return
        if not isinstance(value, dict):
            return
        try:
            if record.topic == topics.ACTIONS:
                self.notifier.apply_action(value, now)
            elif record.topic == topics.SILENCES:
                self.notifier.apply_silence(value)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("unreadable %s record at %d@%d: %s", record.topic, record.partition, record.offset, exc)
