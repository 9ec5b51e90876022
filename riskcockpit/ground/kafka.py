"""Kafka for every component: the security options its clients are made with, and the topics it
needs, made sure of before it starts (partition counts equal, so the worker's tables line up).

The embedded broker process itself is the application's (:mod:`riskcockpit.broker`).
"""

from __future__ import annotations

import time


class BrokerError(RuntimeError):
    pass


_client_configs: dict | None = None


def use_security(kafka_settings) -> None:
    """Make ``kafka_settings``' security options (``kafka.security_protocol``, its principal, …)
    this process's: a process is one component, and talks to the cluster as one principal."""
    global _client_configs
    _client_configs = kafka_settings.client_configs()


def client_configs() -> dict:
    """The security options every kafka-python client of this process is made with: set by
    :func:`use_security` (every command does), else read from the settings once."""
    global _client_configs
    if _client_configs is None:
        from riskcockpit.ground.settings import load_settings

        _client_configs = load_settings().kafka.client_configs()
    return dict(_client_configs)


def subscribe(consumer, names, listener=None) -> None:
    """``consumer.subscribe(names)``, and the metadata of the topics that exist fetched before
    the first poll joins the group.

    A new kafka-python consumer's metadata is empty: it joins its group with no partitions and
    rejoins when the metadata catches up. In CI that second rebalance (kafka-python 3.0.12)
    once never completed its SyncGroup, and the notifier held no partitions for minutes.
    Fetched after subscribing (so the coordinator takes its snapshot of the subscribed
    topics), the first join assigns the partitions and nothing changes afterwards.
    """
    consumer.subscribe(list(names), listener=listener)
    consumer.topics()  # fetches every topic's metadata into the consumer's cache


def ensure_topics(bootstrap: str, partitions: int, names: tuple[str, ...], timeout: float = 30.0,
                  configs: dict[str, str] | None = None, security: dict | None = None) -> None:
    """Create missing topics with ``partitions`` partitions (and topic ``configs``, such as
    ``cleanup.policy``); existing ones must match (co-partitioning)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000,
                                     **(client_configs() if security is None else security))
            break
        except (KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka at {bootstrap} is not reachable: {exc}") from exc
            time.sleep(1)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(n, partitions, 1, topic_configs=configs or {}) for n in names if n not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process won the race
        # A topic created a moment ago may not be described yet (error code 3): ask again.
        while True:
            described = admin.describe_topics(list(names))
            pending = [t["name"] for t in described if t["error_code"] != 0]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise BrokerError(f"topics not ready on {bootstrap}: {pending}")
            time.sleep(0.5)
        wrong = {t["name"]: len(t["partitions"]) for t in described if len(t["partitions"]) != partitions}
        if wrong:
            raise BrokerError(
                f"topics with a partition count other than kafka.partitions={partitions}: {wrong}; "
                "the worker's tables need them equal"
            )
    finally:
        admin.close()
