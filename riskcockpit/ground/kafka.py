"""Kafka for every component: how it reaches the cluster (the ``kafka`` settings), the security
options its clients are made with, and the topics it needs, made sure of before it starts (partition counts equal, so the worker's tables line up).

The embedded broker process itself is the application's (:mod:`riskcockpit.broker`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from riskcockpit.ground.settings import Section


class BrokerError(RuntimeError):
    pass


class KafkaSettings(Section):
    """How this process reaches the cluster (section ``kafka``), and the embedded broker's place."""

    bootstrap: str | None = Field(
        None, description="host:port[,host:port] of an existing cluster; empty runs the embedded broker"
    )
    host: str = Field("127.0.0.1", description="the interface the embedded broker listens on (0.0.0.0: every one)")
    advertised_host: str | None = Field(
        None, description="the name clients reach the embedded broker by (default: host; set it when host is 0.0.0.0)")
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    partitions: int = Field(4, ge=1, le=1024)
    heap: str = Field("768m", pattern=r"^\d+[kmg]$")
    # How every client (Faust's aiokafka, kafka-python) talks to the cluster: Kafka's own names.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    username: str | None = Field(None, description="this component's principal (SASL)")
    password: SecretStr | None = Field(None, description="its password; from RISKCOCKPIT_KAFKA__PASSWORD, not a file")
    ssl_cafile: Path | None = Field(None, description="CA certificate(s) the brokers' certificates are checked against")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="its private key")

    @model_validator(mode="after")
    def _credentials(self):
        if self.security_protocol.startswith("SASL") and not (self.username and self.password):
            raise ValueError(f"security_protocol {self.security_protocol} needs username and password "
                             "(RISKCOCKPIT_KAFKA__USERNAME, RISKCOCKPIT_KAFKA__PASSWORD)")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self

    @property
    def servers(self) -> str:
        return self.bootstrap or f"{self.host}:{self.port}"

    def client_configs(self) -> dict[str, Any]:
        """The security settings as kafka-python's client options (empty for PLAINTEXT).

        >>> KafkaSettings(security_protocol="SASL_PLAINTEXT", username="worker", password="pw").client_configs()
        {'security_protocol': 'SASL_PLAINTEXT', 'sasl_mechanism': 'SCRAM-SHA-512', 'sasl_plain_username': 'worker', 'sasl_plain_password': 'pw'}
        """
        configs: dict[str, Any] = {}
        if self.security_protocol != "PLAINTEXT":
            configs["security_protocol"] = self.security_protocol
        if self.security_protocol.startswith("SASL"):
            configs |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.username,
                        "sasl_plain_password": self.password.get_secret_value()}
        if self.security_protocol.endswith("SSL"):
            configs |= {k: str(v) for k, v in (("ssl_cafile", self.ssl_cafile), ("ssl_certfile", self.ssl_certfile),
                                                ("ssl_keyfile", self.ssl_keyfile)) if v}
        return configs

    def faust_credentials(self):
        """The same for Faust (aiokafka): None for PLAINTEXT."""
        if self.security_protocol == "PLAINTEXT":
            return None
        import faust
        from aiokafka.helpers import create_ssl_context

        context = None
        if self.security_protocol.endswith("SSL"):
            context = create_ssl_context(cafile=self.ssl_cafile and str(self.ssl_cafile),
                                         certfile=self.ssl_certfile and str(self.ssl_certfile),
                                         keyfile=self.ssl_keyfile and str(self.ssl_keyfile))
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(context)
        return faust.SASLCredentials(username=self.username, password=self.password.get_secret_value(),
                                     ssl_context=context, mechanism=self.sasl_mechanism)

    @property
    def embedded(self) -> bool:
        return not self.bootstrap



_client_configs: dict = {}


def use_security(kafka_settings: KafkaSettings) -> None:
    """Make ``kafka_settings``' security options (``kafka.security_protocol``, its principal, …)
    this process's: a process is one component, and talks to the cluster as one principal."""
    global _client_configs
    _client_configs = kafka_settings.client_configs()


def client_configs() -> dict:
    """The security options every kafka-python client of this process is made with: PLAINTEXT
    until :func:`use_security` (every command calls it with its settings)."""
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
