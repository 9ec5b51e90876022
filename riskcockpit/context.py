"""What every command is given: the main group's flags, and the settings they select."""

from __future__ import annotations

import click

from riskcockpit.ground.kafka import use_security
from riskcockpit.ground.yamlfile import ConfigError
from riskcockpit.settings import Settings, load_settings


class Context:
    """The ``riskcockpit`` group's options (``--config-dir``, ``--kafka``, …), for its commands."""

    def __init__(self, config_dir: str | None = None, overrides: dict | None = None):
        self.config_dir = config_dir
        self.overrides = overrides or {}

    def settings(self, **more) -> Settings:
        """The settings these options select; the command's Kafka clients talk as the principal
        they name (a process is one component)."""
        try:
            settings = load_settings(self.config_dir, **self.overrides, **more)
        except ConfigError as exc:
            raise click.ClickException(f"configuration error:\n{exc}") from None
        use_security(settings.kafka)
        return settings


def settings_of(obj: Context | None) -> Settings:
    """The settings of a command: its group's, or, invoked on its own (a test, an embedding),
    those of the default config folder and the environment."""
    return (obj if obj is not None else Context()).settings()
