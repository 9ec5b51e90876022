"""Delivery: a notification job becomes signed HTTP requests until one succeeds or we give up.

``Deliverer`` is the plain part: rate limit, request, judge, back off, retry, and report every
attempt through a callback. Timeouts, connection errors, 408/425/429 and 5xx are retried with
exponential backoff and jitter (a Retry-After wins when longer); any other answer, or running
out of attempts, dead-letters the job.

``DeliveryService`` is the Kafka shell: it reads ``risk.notifications`` in its consumer group,
gives each receiver a lane (a thread) so a receiver that is down delays only its own
notifications, writes every attempt to ``risk.deliveries`` and failures to
``risk.notifications.dlq``, and commits a job's offset only once it is delivered or
dead-lettered. A crash in between means the job is sent again, with the same
``X-Riskcockpit-Id``.
"""

from __future__ import annotations

import heapq
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from riskcockpit.alerting import redact
from riskcockpit.alerting.backoff import next_delay
from riskcockpit.alerting.config import AlertingConfig
from riskcockpit.alerting.ratelimit import TokenBucket
from riskcockpit.alerting.receivers import MissingSecret, Receiver, Verdict, build

log = logging.getLogger("riskcockpit.delivery")


@dataclass
class Outcome:
    status: str  # delivered | dead_letter | aborted
    attempts: int
    last_status: int = 0
    last_error: str = ""


@dataclass
class Try:
    ok: bool
    final: bool  # delivered, or given up (dead letter)
    status: int
    error: str = ""
    delay: float = 0.0  # before this job's next attempt
    pause: float = 0.0  # before any attempt to this receiver (Retry-After on 429/503)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def describe_exception(exc: BaseException) -> str:
    """Why a request failed, in words that carry no URL (URLs may hold robot tokens)."""
    root: BaseException = exc
    seen = set()
    while (root.__cause__ or root.__context__) is not None and id(root) not in seen:
        seen.add(id(root))
        nxt = root.__cause__ or root.__context__
        if isinstance(nxt, OSError | TimeoutError) or "urllib3" in type(nxt).__module__:
            root = nxt
        else:
            break
    kind = "timeout" if isinstance(exc, requests.Timeout) else "connection error" \
        if isinstance(exc, requests.ConnectionError) else type(exc).__name__
    detail = ""
    if isinstance(root, OSError) and root.strerror:
        detail = root.strerror
    elif "refused" in str(exc).lower():
        detail = "connection refused"
    elif "timed out" in str(exc).lower():
        detail = "timed out"
    return redact.redact(f"{kind}: {detail}" if detail else kind)


class Deliverer:
    def __init__(self, config: AlertingConfig, cockpit_url: str, record: Callable[[dict], None] | None = None,
                 environ: Mapping[str, str] | None = None, rng: random.Random | None = None,
                 allow_missing_secrets: bool = False):
        redact.install_log_filter()
        self.config = config
        self.receivers: dict[str, Receiver] = {}
        self.disabled: dict[str, str] = {}
        for r in config.receivers:
            try:
                self.receivers[r.name] = build(r, cockpit_url, environ)
            except MissingSecret as exc:
                if not allow_missing_secrets:
                    raise
                self.disabled[r.name] = str(exc)
                log.warning("%s: its notifications go to the dead-letter topic", exc)
        self.buckets: dict[str, TokenBucket] = {}
        for r in config.receivers:
            limit = r.effective_rate_limit()
            if limit is not None:
                self.buckets[r.name] = TokenBucket(limit.requests / limit.per, limit.burst)
        self.record = record or (lambda attempt: None)
        self.rng = rng or random.Random()
        self.stopping = threading.Event()
        self._sessions = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
        return session

    def try_once(self, job: dict[str, Any], attempt: int, max_attempts: int | None = None) -> Try:
        """One attempt, recorded; no waiting (the caller owns rate limits and backoff)."""
        receiver = self.receivers.get(job.get("receiver", ""))
        if receiver is None:
            error = self.disabled.get(job.get("receiver", "")) or \
                f"unknown receiver {job.get('receiver')!r} (not in the configuration any more?)"
            self._record(job, None, attempt, 0, 0.0, error, "dead_letter")
            return Try(False, True, 0, error)
        policy = self.config.retry_for(receiver.config)
        verdict, status, latency = self._attempt(receiver, job)
        if verdict.ok:
            self._record(job, receiver, attempt, status, latency, "", "delivered")
            return Try(True, True, status)
        final = attempt >= (max_attempts or policy.max_attempts) or not verdict.retryable
        self._record(job, receiver, attempt, status, latency, verdict.error, "dead_letter" if final else "retry")
        if final:
            log.warning("notification %s to %s dead-lettered after %d attempt(s): %s",
                        job["notification_id"][:12], receiver.name, attempt, verdict.error)
            return Try(False, True, status, verdict.error)
        delay = next_delay(attempt, policy, verdict.retry_after, self.rng)
        # "Slow down" is about the receiver, not this request: every notification to it waits.
        pause = 0.0
        if verdict.retry_after and status in (429, 503):
            pause = min(verdict.retry_after, policy.max_retry_after)
        log.info("notification %s to %s failed (attempt %d: %s); retrying in %.2fs",
                 job["notification_id"][:12], receiver.name, attempt, verdict.error, delay)
        return Try(False, False, status, verdict.error, delay, pause)

    def take_token(self, receiver: str) -> bool:
        bucket = self.buckets.get(receiver)
        return True if bucket is None else bucket.take(self.stopping)

    def deliver(self, job: dict[str, Any], max_attempts: int | None = None) -> Outcome:
        """Deliver one job now, waiting between attempts (commands and tests; the service uses ``Lane``)."""
        attempt = 0
        while True:
            if not self.take_token(job.get("receiver", "")) or self.stopping.is_set():
                return Outcome("aborted", attempt)
            attempt += 1
            result = self.try_once(job, attempt, max_attempts)
            if result.final:
                return Outcome("delivered" if result.ok else "dead_letter", attempt, result.status, result.error)
            if self.stopping.wait(max(result.delay, result.pause)):
                return Outcome("aborted", attempt, result.status, result.error)

    def _attempt(self, receiver: Receiver, job: dict[str, Any]) -> tuple[Verdict, int, float]:
        request = receiver.request(job)
        started = time.perf_counter()
        try:
            response = self._session().post(request.url, data=request.body, headers=request.headers,
                                            timeout=receiver.config.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            return Verdict(False, True, describe_exception(exc)), 0, (time.perf_counter() - started) * 1000
        latency = (time.perf_counter() - started) * 1000
        try:
            text = response.text
        except Exception:  # noqa: BLE001 - an unreadable body does not change the status
            text = ""
        return receiver.judge(response.status_code, response.headers, text), response.status_code, latency

    def _record(self, job: dict[str, Any], receiver: Receiver | None, attempt: int, status: int, latency: float,
                error: str, outcome: str) -> None:
        self.record({
            "attempt_id": uuid.uuid4().hex,
            "notification_id": job.get("notification_id", ""),
            "receiver": job.get("receiver", ""),
            "receiver_type": receiver.type if receiver else "",
            "kind": job.get("kind", ""),
            "group_key": job.get("group_key", ""),
            "attempt": attempt,
            "status_code": status,
            "latency_ms": round(latency, 3),
            "error": redact.redact(error),
            "outcome": outcome,
            "alert_ids": list(job.get("alert_ids") or []),
            "attempted_at": _now_iso(),
        })


class Lane:
    """One receiver's deliveries: new jobs in order, each retry when its backoff is over.

    A job waiting for its next attempt does not hold up the jobs behind it (one bad payload must
    not block a receiver), but a Retry-After on 429/503 pauses the whole receiver. ``workers``
    threads share the lane, so a slow receiver (say 200 ms an answer) is not limited to five
    notifications a second.
    """

    def __init__(self, deliverer: Deliverer, receiver: str,
                 finished: Callable[[Any, dict[str, Any], Outcome], None], workers: int = 1):
        self.deliverer = deliverer
        self.receiver = receiver
        self.finished = finished
        self.incoming: queue.Queue = queue.Queue()
        self._retries: list[tuple[float, int, Any, dict[str, Any], int]] = []
        self._seq = 0
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, name=f"delivery-{receiver}-{i}", daemon=True)
                        for i in range(workers)]

    def start(self) -> Lane:
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def put(self, token: Any, job: dict[str, Any]) -> None:
        self.incoming.put((token, job))

    def close(self) -> None:
        self.incoming.put(None)

    def _next(self) -> tuple[Any, dict[str, Any], int] | None:
        """The next job to try: a due retry first (it is older), else a new one; None to stop."""
        stopping = self.deliverer.stopping
        while not stopping.is_set():
            now = time.monotonic()
            with self._lock:
                paused = self._paused_until - now
                if paused <= 0 and self._retries and self._retries[0][0] <= now:
                    _, _, token, job, attempts = heapq.heappop(self._retries)
                    return token, job, attempts
                wait = min(self._retries[0][0] - now, 0.5) if self._retries else 0.5
            if paused > 0:
                stopping.wait(min(paused, 0.5))
                continue
            try:
                item = self.incoming.get(timeout=max(wait, 0.0))
            except queue.Empty:
                continue
            if item is None:
                self.incoming.put(None)  # the other workers of this lane stop too
                return None
            return item[0], item[1], 0
        return None

    def run(self) -> None:
        while True:
            picked = self._next()
            if picked is None:
                return  # shutting down: unfinished jobs stay uncommitted and are redelivered
            token, job, attempts = picked
            if not self.deliverer.take_token(self.receiver):
                return
            try:
                result = self.deliverer.try_once(job, attempts + 1)
            except Exception as exc:  # noqa: BLE001 - a job that cannot even be attempted must not stop the lane
                log.exception("notification %s to %s cannot be sent", str(job.get("notification_id"))[:12],
                              self.receiver)
                self.finished(token, job, Outcome("dead_letter", attempts + 1, 0, f"{type(exc).__name__}: {exc}"))
                continue
            if result.final:
                outcome = Outcome("delivered" if result.ok else "dead_letter", attempts + 1, result.status,
                                  result.error)
                self.finished(token, job, outcome)
                continue
            now = time.monotonic()
            with self._lock:
                self._paused_until = max(self._paused_until, now + result.pause)
                self._seq += 1
                heapq.heappush(self._retries, (now + max(result.delay, result.pause), self._seq, token, job,
                                               attempts + 1))


def keeping_error(service) -> Callable[[], None]:
    """A thread target that keeps the exception for the command to report (and exit non-zero)."""
    def target() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the owner of the thread
            service.error = exc
            log.exception("%s stopped", type(service).__name__)
            raise
    return target


def dead_letter(job: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    return {"notification_id": job.get("notification_id", ""), "receiver": job.get("receiver", ""),
            "attempts": outcome.attempts, "last_status": outcome.last_status,
            "last_error": redact.redact(outcome.last_error), "dead_lettered_at": _now_iso(), "job": job}


# ---------------------------------------------------------------- the Kafka shell

class DeliveryService:
    def __init__(self, config: AlertingConfig, bootstrap: str, cockpit_url: str, partitions: int = 4,
                 environ: Mapping[str, str] | None = None, allow_missing_secrets: bool = False):
        self.config = config
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._producer = None
        self.deliverer = Deliverer(config, cockpit_url, record=self._publish_attempt, environ=environ,
                                   allow_missing_secrets=allow_missing_secrets)
        self.outcomes: dict[str, int] = {"delivered": 0, "dead_letter": 0}

    def stop(self) -> None:
        self.stopping.set()
        self.deliverer.stopping.set()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=keeping_error(self), name="riskcockpit-delivery", daemon=True)
        thread.start()
        return thread

    def _publish_attempt(self, attempt: dict[str, Any]) -> None:
        from riskcockpit.ground import topics

        self._producer.send(topics.DELIVERIES, key=attempt["notification_id"].encode(),
                            value=json.dumps(attempt, ensure_ascii=False).encode())

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        from riskcockpit.alerting import bus
        from riskcockpit.alerting.offsets import OffsetTracker
        from riskcockpit.ground import topics
        from riskcockpit.ground.kafka import client_configs, subscribe

        bus.ensure_alerting_topics(self.bootstrap, self.partitions)
        self._producer = bus.producer(self.bootstrap)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.config.delivery.group_id, **client_configs(),
                                 enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                 max_poll_records=500, **bus.GROUP_TIMEOUTS)
        tracker = OffsetTracker()
        subscribe(consumer, [topics.NOTIFICATIONS], listener=bus.Rebalance(consumer, tracker))
        lanes: dict[str, Lane] = {}

        def finished(token, job: dict[str, Any], outcome: Outcome) -> None:
            if outcome.status == "dead_letter":
                from riskcockpit.alerting.notifier import job_key

                # Wait for the broker: the job may be committed only once its dead letter is stored.
                self._producer.send(topics.NOTIFICATIONS_DLQ, key=job_key(job),
                                    value=json.dumps(dead_letter(job, outcome), ensure_ascii=False).encode()
                                    ).get(timeout=30)
            self.outcomes[outcome.status] += 1
            tracker.done(*token)

        def lane_for(name: str) -> Lane:
            if name not in lanes:
                receiver = self.deliverer.receivers.get(name)
                workers = receiver.config.effective_concurrency() if receiver else 1
                lanes[name] = Lane(self.deliverer, name, finished, workers).start()
            return lanes[name]

        log.info("delivery consuming %s (group %s) for %d receiver(s)", topics.NOTIFICATIONS,
                 self.config.delivery.group_id, len(self.deliverer.receivers))
        last_commit, paused = 0.0, False
        try:
            while not self.stopping.is_set():
                busy = tracker.held() >= self.config.delivery.max_in_flight
                if busy != paused:
                    # Keep polling while paused: the group must see us alive even if a receiver is down for long.
                    (consumer.pause if busy else consumer.resume)(*consumer.assignment())
                    paused = busy
                polled = bus.poll_records(consumer, 100)
                if not self.ready.is_set() and consumer.assignment():
                    self.ready.set()
                for record in polled:
                    tp = TopicPartition(record.topic, record.partition)
                    tracker.add(tp, record.offset)
                    try:
                        job = json.loads(record.value)
                        if not isinstance(job, dict) or "notification_id" not in job:
                            raise ValueError("not a notification job")
                    except ValueError as exc:
                        log.warning("unreadable job at %d@%d: %s", record.partition, record.offset, exc)
                        self._producer.send(topics.NOTIFICATIONS_DLQ, key=record.key, value=record.value or b"")
                        self._producer.flush()
                        tracker.done(tp, record.offset)
                        continue
                    lane_for(str(job.get("receiver", ""))).put((tp, record.offset), job)
                if time.monotonic() - last_commit >= 0.5:
                    last_commit = time.monotonic()
                    self._commit(consumer, tracker, OffsetAndMetadata)
        finally:
            self.deliverer.stopping.set()
            for each in lanes.values():
                each.close()
            for each in lanes.values():
                each.join(timeout=15)
            try:
                self._commit(consumer, tracker, OffsetAndMetadata)
            finally:
                consumer.close(autocommit=False)
                self._producer.close(timeout=10)

    def _commit(self, consumer, tracker, OffsetAndMetadata) -> None:
        offsets = {tp: o for tp, o in tracker.committable().items() if tp in consumer.assignment()}
        if offsets:
            # The attempt records of what we commit must be on Kafka first: the audit trail is complete.
            self._producer.flush(timeout=30)
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            tracker.mark_committed(offsets)
