"""Settings: readable YAML in a config folder, validated by pydantic, overridable by environment.

Precedence (highest first): command-line flags, environment variables, ``riskcockpit.yaml``.
``RISKCOCKPIT_CONFIG_DIR`` points every command at another folder. Single settings are
overridden with ``RISKCOCKPIT_<SECTION>__<FIELD>`` (e.g. ``RISKCOCKPIT_SINK__BATCH_SIZE=2000``),
plus three short names operators expect: ``RISKCOCKPIT_KAFKA`` (bootstrap servers),
``RISKCOCKPIT_CLICKHOUSE_URL`` and ``RISKCOCKPIT_DATA_DIR``.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from riskcockpit.ground.yamlfile import ConfigError, describe_errors, read_yaml, validate

# The configuration that ships with the package: the checkout's config/, or its copy in an
# installed wheel, wherever the command runs from.
DEFAULT_CONFIG_DIR = Path(str(resources.files("riskcockpit.config")))
SETTINGS_FILE = "riskcockpit.yaml"
ENV_PREFIX = "RISKCOCKPIT_"
# Short names kept because they are what an operator types first; each maps to one nested field.
ENV_ALIASES = {
    "RISKCOCKPIT_KAFKA": ("kafka", "bootstrap"),
    "RISKCOCKPIT_CLICKHOUSE_URL": ("store", "url"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
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


class StoreSettings(_Section):
    url: str | None = Field(None, description="http(s)://user:pass@host:8123/db of a ClickHouse server")
    database: str = Field("riskcockpit", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _database_from_url(self):
        # A URL that names a database wins: operators write one URL, not two settings.
        path = urlparse(self.url).path.strip("/") if self.url else ""
        if path:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", path):
                raise ValueError(f"database {path!r} in the URL is not a plain identifier")
            object.__setattr__(self, "database", path)
        return self

    @property
    def embedded(self) -> bool:
        return not self.url


class WorkerSettings(_Section):
    app_id: str = "riskcockpit"
    max_record_bytes: int = Field(65536, ge=1024)
    max_amount: float = Field(1e12, gt=0, allow_inf_nan=False,
                              description="larger amounts are a unit mistake and go to transactions.dlq")
    web_port: int | None = Field(None, description="Faust's own web/metrics port; empty disables it")
    decisions_kept: int = Field(200_000, ge=1, description="decisions per partition a label can still teach")


class SinkSettings(_Section):
    group_id: str = "riskcockpit-sink"
    batch_size: int = Field(5000, ge=1)
    max_wait_ms: int = Field(500, ge=10)


class CockpitSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8050, ge=1, le=65535)
    refresh_seconds: float = Field(2.0, gt=0)
    language: Literal["en", "zh"] = "en"
    table_rows: int = Field(200, ge=1, le=5000)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class GeneratorSettings(_Section):
    rate: float = Field(200.0, gt=0)
    accounts: int = Field(5000, ge=10)
    fraud_share: float = Field(0.01, ge=0, le=0.5)
    seed: int = 7


class Settings(_Section):

    data_dir: Path = Field(Path(".data"), description="broker data, embedded store, pid files")
    kafka: KafkaSettings = KafkaSettings()
    store: StoreSettings = StoreSettings()
    worker: WorkerSettings = WorkerSettings()
    sink: SinkSettings = SinkSettings()
    cockpit: CockpitSettings = CockpitSettings()
    generator: GeneratorSettings = GeneratorSettings()
    config_dir: Path = Field(DEFAULT_CONFIG_DIR, exclude=True)

    @property
    def chdb_path(self) -> Path:
        return (self.data_dir / "chdb").resolve()

    @property
    def kafka_dir(self) -> Path:
        return (self.data_dir / "kafka").resolve()


def config_dir(explicit: str | os.PathLike | None = None) -> Path:
    chosen = explicit or os.environ.get("RISKCOCKPIT_CONFIG_DIR") or DEFAULT_CONFIG_DIR
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"{path}: config folder not found (from --config-dir or RISKCOCKPIT_CONFIG_DIR)")
    return path


def environment_overrides(environ: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Nested settings from ``RISKCOCKPIT_<SECTION>__<FIELD>`` and the short names, keyed by variable."""
    environ = os.environ if environ is None else environ
    found: dict[str, tuple[str, ...]] = {}
    for name in environ:
        if name in ENV_ALIASES:
            found[name] = ENV_ALIASES[name]
        elif name == "RISKCOCKPIT_DATA_DIR":
            found[name] = ("data_dir",)
        elif name.startswith(ENV_PREFIX) and "__" in name:
            found[name] = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__"))
    return {name: {"path": path, "value": environ[name]} for name, path in found.items() if environ[name] != ""}


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        node = data.get(part)
        data[part] = node = dict(node) if isinstance(node, dict) else {}
        data = node
    data[path[-1]] = value


def load_settings(config_dir_arg: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Load ``riskcockpit.yaml`` from the config folder, then environment, then ``overrides``.

    ``overrides`` are dotted ``section.field`` values from command-line flags; ``None`` is ignored.
    """
    folder = config_dir(config_dir_arg)
    path = folder / SETTINGS_FILE
    written = read_yaml(path)
    validate(Settings, written, extra={"config_dir": folder})
    data = {**written, "config_dir": folder}
    by_path = {}
    for name, item in environment_overrides().items():
        _set(data, item["path"], item["value"])
        by_path[item["path"]] = name
    for dotted, value in overrides.items():
        if value is not None:
            _set(data, tuple(dotted.split(".")), value)
            by_path[tuple(dotted.split("."))] = f"--{dotted.split('.')[-1].replace('_', '-')}"
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [
            describe_errors(by_path[where], [err]) if (where := tuple(str(p) for p in err["loc"])) in by_path
            else describe_errors(str(path), [err], written.lines)
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None
