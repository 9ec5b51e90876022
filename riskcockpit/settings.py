"""``riskcockpit.yaml``: every component's section, composed, and loaded once per command.

Each component declares its own section beside its code; this module is where they meet, and
the one place that knows the folder they share (``data_dir``) and the short environment names
operators type first. A command loads the settings here and hands each component its section.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from riskcockpit.dashboard.settings import CockpitSettings
from riskcockpit.ground import settings as loader
from riskcockpit.ground.kafka import KafkaSettings
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR, Section
from riskcockpit.store.settings import StoreSettings
from riskcockpit.streams.settings import GeneratorSettings, SinkSettings, WorkerSettings

# Short names kept because they are what an operator types first; each maps to one nested field.
ENV_ALIASES = {
    "RISKCOCKPIT_KAFKA": ("kafka", "bootstrap"),
    "RISKCOCKPIT_CLICKHOUSE_URL": ("store", "url"),
    "RISKCOCKPIT_DATA_DIR": ("data_dir",),
}


class Settings(Section):
    data_dir: Path = Field(Path(".data"), description="broker data, embedded store, pid files")
    kafka: KafkaSettings = KafkaSettings()
    store: StoreSettings = StoreSettings()
    worker: WorkerSettings = WorkerSettings()
    sink: SinkSettings = SinkSettings()
    cockpit: CockpitSettings = CockpitSettings()
    generator: GeneratorSettings = GeneratorSettings()
    config_dir: Path = Field(DEFAULT_CONFIG_DIR, exclude=True)

    @model_validator(mode="after")
    def _in_data_dir(self):
        # The embedded store lives in the data folder unless the store section says elsewhere.
        if self.store.path is None:
            self.store = self.store.model_copy(update={"path": self.data_dir / "chdb"})
        return self

    @property
    def kafka_dir(self) -> Path:
        return (self.data_dir / "kafka").resolve()

    @property
    def faust_dir(self) -> Path:
        return self.data_dir / "faust"


def load_settings(config_dir_arg: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """The settings of ``riskcockpit.yaml`` in the config folder, then environment, then
    ``overrides`` (dotted ``section.field`` values from flags; ``None`` is ignored)."""
    return loader.load(Settings, config_dir_arg, aliases=ENV_ALIASES, **overrides)
