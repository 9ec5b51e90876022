"""Configuration: YAML defaults, environment overrides, errors that name the file and field."""

import shutil

import pytest

from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.ground.yamlfile import ConfigError
from riskcockpit.indicators import REGISTRY
from riskcockpit.indicators.scoring import load_scoring_config
from riskcockpit.settings import load_settings


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    for name in ("riskcockpit.yaml", "indicators.yaml"):
        shutil.copy(DEFAULT_CONFIG_DIR / name, tmp_path / name)
    for key in ("RISKCOCKPIT_KAFKA", "RISKCOCKPIT_CLICKHOUSE_URL", "RISKCOCKPIT_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RISKCOCKPIT_CONFIG_DIR", str(tmp_path))
    return tmp_path


def test_defaults_are_embedded(config_dir):
    s = load_settings()
    assert s.kafka.embedded and s.store.embedded and s.kafka.servers == "127.0.0.1:9092"
    assert s.config_dir == config_dir


def test_environment_overrides_file(config_dir, monkeypatch):
    monkeypatch.setenv("RISKCOCKPIT_KAFKA", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("RISKCOCKPIT_CLICKHOUSE_URL", "http://u:p@ch:8123/risk")
    monkeypatch.setenv("RISKCOCKPIT_SINK__BATCH_SIZE", "123")
    s = load_settings()
    assert s.kafka.servers == "broker-a:9092,broker-b:9092" and not s.kafka.embedded
    assert s.store.url == "http://u:p@ch:8123/risk" and s.sink.batch_size == 123
    assert s.store.database == "risk"  # the URL's database wins over store.database


def test_flags_beat_environment(config_dir, monkeypatch):
    monkeypatch.setenv("RISKCOCKPIT_KAFKA", "env:9092")
    assert load_settings(**{"kafka.bootstrap": "flag:9092"}).kafka.servers == "flag:9092"


def test_file_error_names_file_line_and_field(config_dir):
    text = (config_dir / "riskcockpit.yaml").read_text().replace("partitions: 4", "partitions: many")
    (config_dir / "riskcockpit.yaml").write_text(text)
    line = text.splitlines().index("  partitions: many") + 1
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{config_dir / 'riskcockpit.yaml'}:{line}: kafka.partitions: Input should be a valid integer" \
        in str(info.value)


def test_a_key_written_twice_is_an_error_naming_its_line(config_dir):
    (config_dir / "riskcockpit.yaml").write_text("sink:\n  batch_size: 10\n  batch_size: 20\n")
    with pytest.raises(ConfigError, match=r"riskcockpit\.yaml:3: sink\.batch_size: 'batch_size' appears twice"):
        load_settings()


def test_unknown_setting_is_an_error(config_dir):
    (config_dir / "riskcockpit.yaml").write_text("sink:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match=r"sink\.batchsize: Extra inputs are not permitted"):
        load_settings()


def test_env_error_names_the_variable(config_dir, monkeypatch):
    monkeypatch.setenv("RISKCOCKPIT_COCKPIT__PORT", "eighty")
    with pytest.raises(ConfigError, match=r"^RISKCOCKPIT_COCKPIT__PORT: cockpit\.port"):
        load_settings()


def test_yaml_syntax_error_names_line(config_dir):
    (config_dir / "riskcockpit.yaml").write_text("kafka:\n  port: [1,\n")
    with pytest.raises(ConfigError, match=r"riskcockpit\.yaml:3: invalid YAML \(column 1\)"):
        load_settings()


def test_a_file_that_is_not_utf8_is_named(config_dir):
    (config_dir / "indicators.yaml").write_bytes("indicators:\n  velocity: {weight: 10}  # 速度\n".encode("gb18030"))
    with pytest.raises(ConfigError, match=r"indicators\.yaml: not UTF-8 text \(byte \d+\)"):
        load_scoring_config(config_dir)


def test_missing_config_dir(tmp_path):
    with pytest.raises(ConfigError, match="config folder not found"):
        load_settings(tmp_path / "nope")


def test_scoring_error_names_file_indicator_and_field(config_dir):
    path = config_dir / "indicators.yaml"
    path.write_text(path.read_text().replace("params: {window: 10m, limit: 5}", "params: {window: soon, limit: 5}"))
    with pytest.raises(ConfigError) as info:
        load_scoring_config(config_dir)
    message = str(info.value)
    line = path.read_text().splitlines().index("    params: {window: soon, limit: 5}") + 1
    assert f"{path}:{line}: indicators.count_velocity.params.window: 'soon' is not a duration" in message


def test_each_indicator_problem_is_named_at_its_own_line_with_the_files_other_problems(config_dir):
    path = config_dir / "indicators.yaml"
    path.write_text("tiers: {watch: 60, review: 50, critical: 90}\nindicators:\n  count_velocity:\n    weight: 5\n"
                    "    params:\n      limit: -1\n      windw: 10m\n  nope: {weight: 3}\n")
    with pytest.raises(ConfigError) as info:
        load_scoring_config(config_dir)
    assert str(info.value).splitlines() == [
        f"{path}:1: tiers: must ascend: watch (60.0) < review (50.0) < critical (90.0)",
        f"{path}:6: indicators.count_velocity.params.limit: Input should be greater than or equal to 1 (got -1)",
        f"{path}:7: indicators.count_velocity.params.windw: Extra inputs are not permitted (got '10m')",
        f"{path}:8: indicators.nope: unknown indicator; known: {', '.join(sorted(REGISTRY))}"]


def test_scoring_unknown_indicator_and_bad_tiers(config_dir):
    path = config_dir / "indicators.yaml"
    path.write_text("tiers: {watch: 60, review: 50, critical: 90}\nindicators:\n  velocity_of_light: {weight: 3}\n")
    with pytest.raises(ConfigError) as info:
        load_scoring_config(config_dir)
    message = str(info.value)
    assert "tiers: must ascend" in message
    assert "velocity_of_light: unknown indicator" in message


def test_default_scoring_config_hash_is_stable(config_dir):
    assert load_scoring_config(config_dir).hash == load_scoring_config(DEFAULT_CONFIG_DIR).hash
    path = config_dir / "indicators.yaml"
    path.write_text(path.read_text().replace("watch: 30", "watch: 31"))
    assert load_scoring_config(config_dir).hash != load_scoring_config(DEFAULT_CONFIG_DIR).hash


def test_a_secured_cluster_takes_its_principal_from_the_environment(config_dir, monkeypatch):
    monkeypatch.setenv("RISKCOCKPIT_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="SASL_SSL needs username and password"):
        load_settings()
    monkeypatch.setenv("RISKCOCKPIT_KAFKA__USERNAME", "worker")
    monkeypatch.setenv("RISKCOCKPIT_KAFKA__PASSWORD", "s3cret")
    import certifi  # a real CA bundle stands in for the bank's CA

    monkeypatch.setenv("RISKCOCKPIT_KAFKA__SSL_CAFILE", certifi.where())
    kafka = load_settings().kafka
    assert kafka.client_configs() == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                      "sasl_plain_username": "worker", "sasl_plain_password": "s3cret",
                                      "ssl_cafile": certifi.where()}
    assert "s3cret" not in repr(kafka)  # never in a log line or a traceback
    credentials = kafka.faust_credentials()
    assert credentials.username == "worker" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"


def test_the_embedded_store_lives_in_the_data_folder_unless_its_section_says_elsewhere(config_dir, monkeypatch,
                                                                                       tmp_path):
    monkeypatch.setenv("RISKCOCKPIT_DATA_DIR", str(tmp_path / "data"))
    assert load_settings().store.chdb_path == (tmp_path / "data" / "chdb").resolve()
    monkeypatch.setenv("RISKCOCKPIT_STORE__PATH", str(tmp_path / "elsewhere"))
    assert load_settings().store.chdb_path == (tmp_path / "elsewhere").resolve()


def test_each_component_is_handed_its_own_section(config_dir):
    from riskcockpit.dashboard.settings import CockpitSettings
    from riskcockpit.ground.kafka import KafkaSettings
    from riskcockpit.store.settings import StoreSettings
    from riskcockpit.streams.settings import GeneratorSettings, SinkSettings, WorkerSettings

    s = load_settings()
    assert [type(section) for section in (s.kafka, s.store, s.worker, s.sink, s.cockpit, s.generator)] == [
        KafkaSettings, StoreSettings, WorkerSettings, SinkSettings, CockpitSettings, GeneratorSettings]
    # A section's problem is still named at its line in the one file they share.
    text = (config_dir / "riskcockpit.yaml").read_text().replace("  language: en", "  language: fr")
    (config_dir / "riskcockpit.yaml").write_text(text)
    line = text.splitlines().index("  language: fr        # en | zh") + 1
    with pytest.raises(ConfigError, match=rf"riskcockpit\.yaml:{line}: cockpit\.language: Input should be 'en' or 'zh'"):
        load_settings()
