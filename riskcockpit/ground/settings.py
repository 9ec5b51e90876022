"""Settings: readable YAML in a config folder, validated by pydantic, overridable by environment.

Each component declares its own section (a :class:`Section`: the Kafka connection in
:mod:`riskcockpit.ground.kafka`, the store's, the worker's, the cockpit's, …); the application
composes them into the one ``riskcockpit.yaml`` (:mod:`riskcockpit.settings`) and hands each
component its section. Loading is here, once for every such composition.

Precedence (highest first): command-line flags, environment variables, ``riskcockpit.yaml``.
``RISKCOCKPIT_CONFIG_DIR`` points every command at another folder. Single settings are
overridden with ``RISKCOCKPIT_<SECTION>__<FIELD>`` (e.g. ``RISKCOCKPIT_SINK__BATCH_SIZE=2000``),
plus the short names the composition gives (``aliases``).

>>> environment_overrides({"RISKCOCKPIT_SINK__BATCH_SIZE": "20", "RISKCOCKPIT_KAFKA": "k:9092", "HOME": "/root"},
...                       aliases={"RISKCOCKPIT_KAFKA": ("kafka", "bootstrap")})
{'RISKCOCKPIT_SINK__BATCH_SIZE': {'path': ('sink', 'batch_size'), 'value': '20'}, 'RISKCOCKPIT_KAFKA': {'path': ('kafka', 'bootstrap'), 'value': 'k:9092'}}
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from riskcockpit.ground.yamlfile import ConfigError, describe_errors, read_yaml, validate

# The configuration that ships with the package: the checkout's config/, or its copy in an
# installed wheel, wherever the command runs from.
DEFAULT_CONFIG_DIR = Path(str(resources.files("riskcockpit.config")))
SETTINGS_FILE = "riskcockpit.yaml"
ENV_PREFIX = "RISKCOCKPIT_"

Model = TypeVar("Model", bound=BaseModel)


class Section(BaseModel):
    """One component's settings: a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


def config_dir(explicit: str | os.PathLike | None = None) -> Path:
    chosen = explicit or os.environ.get("RISKCOCKPIT_CONFIG_DIR") or DEFAULT_CONFIG_DIR
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"{path}: config folder not found (from --config-dir or RISKCOCKPIT_CONFIG_DIR)")
    return path


def environment_overrides(environ: dict[str, str] | None = None,
                          aliases: dict[str, tuple[str, ...]] | None = None) -> dict[str, dict[str, Any]]:
    """Nested settings from ``RISKCOCKPIT_<SECTION>__<FIELD>`` and the short names in
    ``aliases`` (variable → field path), keyed by variable; empty variables are ignored."""
    environ = os.environ if environ is None else environ
    aliases = aliases or {}
    found: dict[str, tuple[str, ...]] = {}
    for name in environ:
        if name in aliases:
            found[name] = aliases[name]
        elif name.startswith(ENV_PREFIX) and "__" in name:
            found[name] = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__"))
    return {name: {"path": path, "value": environ[name]} for name, path in found.items() if environ[name] != ""}


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        node = data.get(part)
        data[part] = node = dict(node) if isinstance(node, dict) else {}
        data = node
    data[path[-1]] = value


def load(model: type[Model], config_dir_arg: str | os.PathLike | None = None,
         aliases: dict[str, tuple[str, ...]] | None = None, **overrides: Any) -> Model:
    """``model`` from ``riskcockpit.yaml`` in the config folder, then environment, then ``overrides``.

    ``model`` has a ``config_dir`` field, given the folder. ``overrides`` are dotted
    ``section.field`` values from command-line flags; ``None`` is ignored. Every problem names
    where the value came from: the file and line, the variable, or the flag.
    """
    folder = config_dir(config_dir_arg)
    path = folder / SETTINGS_FILE
    written = read_yaml(path)
    validate(model, written, extra={"config_dir": folder})
    data = {**written, "config_dir": folder}
    by_path = {}
    for name, item in environment_overrides(aliases=aliases).items():
        _set(data, item["path"], item["value"])
        by_path[item["path"]] = name
    for dotted, value in overrides.items():
        if value is not None:
            _set(data, tuple(dotted.split(".")), value)
            by_path[tuple(dotted.split("."))] = f"--{dotted.split('.')[-1].replace('_', '-')}"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [
            describe_errors(by_path[where], [err]) if (where := tuple(str(p) for p in err["loc"])) in by_path
            else describe_errors(str(path), [err], written.lines)
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None
