"""The embedded Kafka broker: a pinned Apache Kafka release run in KRaft single-node mode.

Its jars come from Maven Central through ``broker/pom.xml`` (no tarball download). Data lives
under ``<data_dir>/kafka``; the broker runs detached, with its pid in ``kafka.pid``, so
``riskcockpit kafka start|stop|status`` can manage it from any shell.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from riskcockpit.ground.kafka import BrokerError, ensure_topics

# The pom and Kafka's logging config ship with the package (the checkout's broker/), or an image
# put them, with their jars, where RISKCOCKPIT_BROKER_DIR says (docker/Dockerfile).
_SHIPPED = Path(str(resources.files("riskcockpit.kafka_release")))
BROKER_DIR = Path(os.environ.get("RISKCOCKPIT_BROKER_DIR") or _SHIPPED)
POM = BROKER_DIR / "pom.xml"


def _lib_dir() -> Path:
    """Where the jars go: beside the pom in a checkout or an image, else the user's cache, so an
    installed wheel never writes into site-packages (nor leaves jars behind there on uninstall)."""
    if os.environ.get("RISKCOCKPIT_BROKER_DIR") or (BROKER_DIR.parent / "pyproject.toml").exists():
        return BROKER_DIR / "lib"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "riskcockpit" / f"kafka-{_kafka_version()}"


def _kafka_version() -> str:
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    return found.group(1) if found else "unknown"


LIB_DIR = _lib_dir()


def new_cluster_id() -> str:
    """A random cluster id, as Kafka's ``Uuid.randomUuid`` makes them: never starting with "-",
    which the storage tool would read as an option (one start in 64 failed that way)."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return cluster_id




def ensure_jars(quiet: bool = True) -> Path:
    """Fetch the Kafka jars with Maven once, into :data:`LIB_DIR`; later calls find them there."""
    marker = LIB_DIR / ".fetched"
    if marker.exists() and marker.stat().st_mtime >= POM.stat().st_mtime:
        return LIB_DIR
    cmd = ["mvn", "-B", "-f", str(POM), f"-Dlib.dir={LIB_DIR}", "dependency:copy-dependencies"] + (["-q"] if quiet else [])
    try:
        subprocess.run(cmd, check=True)
    except FileNotFoundError:
        raise BrokerError("mvn not found: Maven is needed once to fetch the Kafka jars") from None
    except subprocess.CalledProcessError as exc:
        raise BrokerError(f"fetching the Kafka jars failed (mvn exit {exc.returncode})") from None
    marker.touch()
    return LIB_DIR


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def grants(app_id: str = "riskcockpit") -> dict[str, dict[str, tuple[str, ...]]]:
    """On a secured broker, what each component's principal may do: read and write the topics it
    owns, read those it consumes, use its consumer groups; ``prefixed``: every operation on the
    topics whose names start so (the worker's changelogs). Nothing else; the operator is a
    super user (topics, ACLs, ``riskcockpit labels``, ``silence``, ``backfill``)."""
    from riskcockpit.ground import topics as t

    sink = {"read": t.SINK_TOPICS, "groups": ("riskcockpit-sink",)}
    return {
        "ingest": {"write": (t.TRANSACTIONS,)},
        "worker": {"read": (t.TRANSACTIONS, t.REPARTITION, t.DISPOSITIONS, *t.BY_ENTITY.values()),
                   "write": (t.REPARTITION, *t.BY_ENTITY.values(), t.DLQ, t.DISPOSITIONS_DLQ, t.SCORES, t.ALERTS, t.CONFIGS),
                   "groups": (app_id,), "prefixed": (f"{app_id}-",)},
        "sink": sink,
        # The cockpit runs the sink itself on the embedded store.
        "cockpit": {"read": sink["read"], "groups": sink["groups"], "write": (t.ACTIONS, t.DISPOSITIONS)},
        "notifier": {"read": (t.ALERTS, t.ACTIONS, t.SILENCES, t.NOTIFICATIONS),
                     "write": (t.NOTIFICATIONS, t.NOTIFICATIONS_DLQ, t.ALERTS_DLQ, t.DELIVERIES),
                     "groups": ("riskcockpit-notifier", "riskcockpit-delivery")},
    }


OPERATOR = "operator"


@dataclass
class EmbeddedBroker:
    """``secure``: a SASL_PLAINTEXT listener with SCRAM-SHA-512, a principal per component
    (:func:`grants`) with generated passwords in ``credentials.json``, and ACLs; made so when
    the data folder is first formatted, and kept so."""

    data_dir: Path
    host: str = "127.0.0.1"  # listened on
    port: int = 9092
    controller_port: int = 9093
    partitions: int = 4
    heap: str = "768m"
    secure: bool = False
    app_id: str = "riskcockpit"  # the worker's: its consumer group and the prefix of its changelogs
    advertised_host: str | None = None  # what clients connect to, when not ``host`` (0.0.0.0 in a container)

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials.json"

    def credentials(self) -> dict[str, str]:
        """Principal → password, made once (readable by the owner only)."""
        if not self.credentials_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # A deployment hands each component its password (docker/compose.yaml): taken from
            # RISKCOCKPIT_KAFKA_PASSWORD_<PRINCIPAL> where set, made up where not.
            made = {name: os.environ.get(f"RISKCOCKPIT_KAFKA_PASSWORD_{name.upper()}") or secrets.token_urlsafe(18)
                    for name in (OPERATOR, *grants())}
            self.credentials_file.touch(mode=0o600)
            self.credentials_file.write_text(json.dumps(made, indent=1))
        return json.loads(self.credentials_file.read_text())

    def client_configs(self, principal: str | None) -> dict:
        """kafka-python options to connect as ``principal`` (None: unauthenticated)."""
        if not self.secure or principal is None:
            return {}
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": principal, "sasl_plain_password": self.credentials()[principal]}

    def environment(self, principal: str) -> dict[str, str]:
        """The settings a component's process needs to run as ``principal``."""
        if not self.secure:
            return {}
        return {"RISKCOCKPIT_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "RISKCOCKPIT_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
                "RISKCOCKPIT_KAFKA__USERNAME": principal, "RISKCOCKPIT_KAFKA__PASSWORD": self.credentials()[principal]}

    def admin_configs(self) -> dict:
        return self.client_configs(OPERATOR)

    @classmethod
    def from_settings(cls, settings, secure: bool = False) -> EmbeddedBroker:
        k = settings.kafka
        broker = cls(settings.kafka_dir, k.host, k.port, k.controller_port, k.partitions, k.heap,
                     app_id=settings.worker.app_id, advertised_host=k.advertised_host)
        broker.secure = secure or broker.credentials_file.exists()  # formatted secure, it stays so
        return broker

    @property
    def bootstrap(self) -> str:
        """Where this process reaches the broker."""
        return f"{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    def _properties(self) -> Path:
        logs = self.data_dir / "logs"
        props = self.data_dir / "server.properties"
        client = "SASL_PLAINTEXT" if self.secure else "PLAINTEXT"
        secured = []
        if self.secure:
            password = self.credentials()[OPERATOR]
            secured = [
                "inter.broker.listener.name=SASL_PLAINTEXT",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{OPERATOR}" '
                f'password="{password}";',
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                # The controller listener (local, not a client listener) carries the broker's own
                # requests to its controller, unauthenticated.
                f"super.users=User:{OPERATOR};User:ANONYMOUS",
                "allow.everyone.if.no.acl.found=false",
            ]
        props.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                # The controller is this process's own: reached locally, whatever clients use.
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners={client}://{self.host}:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners={client}://{self.advertised_host or self.bootstrap.rsplit(':', 1)[0]}:{self.port}",
                "controller.listener.names=CONTROLLER",
                f"listener.security.protocol.map={client}:{client},CONTROLLER:PLAINTEXT",
                *secured,
                f"log.dirs={logs}",
                f"num.partitions={self.partitions}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.hours=168",
                "",
            ])
        )
        return props

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None

    def answers(self) -> bool:
        host, port = self.bootstrap.rsplit(":", 1)
        return port_open(host, int(port))

    def running(self) -> bool:
        return self.pid() is not None and self.answers()

    def start(self, timeout: float = 90.0, to_stdout: bool = False) -> subprocess.Popen | None:
        """Start detached and wait until it accepts connections; a no-op if already up. Returns
        the broker's process when started here. Its output goes to ``kafka.log``, or with
        ``to_stdout`` to this process's (a container's log)."""
        if self.running():
            return None
        if self.answers():
            raise BrokerError(
                f"{self.bootstrap} is taken by another process; stop it or set kafka.port "
                "(or RISKCOCKPIT_KAFKA to use that broker)"
            )
        lib = ensure_jars()
        formatted = (self.data_dir / "logs" / "meta.properties").exists()
        if self.secure and formatted and not self.credentials_file.exists():
            raise BrokerError(f"{self.data_dir} was formatted without security; --secure needs a new data folder")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._properties()
        classpath = f"{lib}/*"
        java = ["java", f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={BROKER_DIR / 'log4j2.properties'}", "-cp", classpath]
        if not formatted:
            scram = [arg for name, password in self.credentials().items()
                     for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")] if self.secure else []
            formatted = subprocess.run(
                java + ["kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(props), *scram],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            if formatted.returncode:
                raise BrokerError(f"formatting Kafka's storage in {self.data_dir} failed "
                                  f"({formatted.returncode}): {formatted.stderr.decode(errors='replace')[-2000:]}")
        with open(os.devnull if to_stdout else self.log_file, "ab") as log:
            out = None if to_stdout else log
            proc = subprocess.Popen(java + ["kafka.Kafka", str(props)], stdout=out, stderr=out,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"Kafka exited with {proc.returncode}" + ("" if to_stdout else f"; see {self.log_file}"))
            if self.answers() and self._ready():
                if self.secure:
                    self._grant(self.app_id)
                return proc
            time.sleep(0.3)
        self.stop()
        raise BrokerError(f"Kafka did not come up within {timeout:.0f}s; see {self.log_file}")

    def run(self, timeout: float = 90.0, ready=lambda: None) -> int:
        """Start, call ``ready`` once its topics and ACLs are made, then stay until the broker
        exits or this process gets SIGTERM / SIGINT (which stops the broker): a container's main
        process. Returns the broker's exit status."""
        proc = self.start(timeout, to_stdout=True)
        if proc is None:
            raise BrokerError(f"a broker already runs from {self.data_dir} (pid {self.pid()})")
        ready()
        asked = []

        def stop(*_):
            asked.append(True)
            proc.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        status = proc.wait()
        self.pid_file.unlink(missing_ok=True)
        return 0 if asked else status  # the JVM answers SIGTERM with 143

    def _ready(self) -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000, **self.admin_configs())
        except (KafkaError, OSError):
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    def _grant(self, app_id: str) -> None:
        """Every topic made, then each component's ACLs (creating an existing ACL changes nothing)."""
        from kafka import KafkaAdminClient
        from kafka.admin import (
            ACL,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePattern,
            ResourceType,
        )

        from riskcockpit.ground import topics as t

        admin_env = self.admin_configs()
        ensure_topics(self.bootstrap, self.partitions, tuple(dict.fromkeys(
            n for n in (*t.ALL, *t.SINK_TOPICS, *t.ALERTING) if n not in t.COMPACTED)), security=admin_env)
        ensure_topics(self.bootstrap, self.partitions, t.COMPACTED, configs={"cleanup.policy": "compact"},
                      security=admin_env)

        def acl(principal, operation, kind, name, pattern=ACLResourcePatternType.LITERAL):
            return ACL(f"User:{principal}", "*", operation, ACLPermissionType.ALLOW,
                       ResourcePattern(kind, name, pattern))

        acls = []
        for principal, grant in grants(app_id).items():
            acls.append(acl(principal, ACLOperation.DESCRIBE, ResourceType.TOPIC, "*"))  # metadata of any topic
            acls += [acl(principal, op, ResourceType.TOPIC, name) for name in grant.get("read", ())
                     for op in (ACLOperation.READ, ACLOperation.DESCRIBE_CONFIGS)]
            acls += [acl(principal, ACLOperation.WRITE, ResourceType.TOPIC, name) for name in grant.get("write", ())]
            acls += [acl(principal, ACLOperation.READ, ResourceType.GROUP, name) for name in grant.get("groups", ())]
            acls += [acl(principal, ACLOperation.ALL, ResourceType.TOPIC, prefix, ACLResourcePatternType.PREFIXED)
                     for prefix in grant.get("prefixed", ())]
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000, **admin_env)
        try:
            result = admin.create_acls(acls)
            if result.get("failed"):
                raise BrokerError(f"ACLs refused: {result['failed'][:3]}")
        finally:
            admin.close()

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (Kafka flushes and closes its logs), SIGKILL after ``timeout``."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> str:
        pid = self.pid()
        if pid and self.answers():
            return f"running: pid {pid}, {self.bootstrap}, data in {self.data_dir}"
        if pid:
            return f"starting or unhealthy: pid {pid}, {self.bootstrap} not answering"
        return f"stopped ({self.bootstrap}, data in {self.data_dir})"


def _reap(pid: int) -> None:
    # The broker is our child when we started it in this process; collect it so it exits.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
