"""YAML a person wrote, read so that every problem names its file, line and field.

Every configuration file (``riskcockpit.yaml``, ``indicators.yaml``, ``alerting.yaml``, a
backtest's or a label file's mapping) is read here, and every problem is reported as
``FILE:LINE: dotted.field: what is wrong`` (without the line when the value came from elsewhere,
an environment variable or a flag), all problems at once, in the order of the file: pydantic
validates the data, and each error's location is looked up in the YAML node tree
(``yaml.compose`` keeps the line of every key and item), so a risk officer is sent to the line
to fix rather than to a field path. A key written twice in one mapping is a problem too: YAML
would silently keep the last one.

>>> data = parse_yaml("tiers:\\n  watch: 30\\n  watch: 40\\n", "indicators.yaml")
>>> print(describe_errors("indicators.yaml", duplicate_errors(data), data.lines))
indicators.yaml:3: tiers.watch: 'watch' appears twice in the same mapping (the last one would win)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


class ConfigError(Exception):
    """A configuration problem, worded as ``file:line: field: what is wrong``."""


class Lines:
    """Line numbers (1-based) of every key and item in a YAML document, by path."""

    def __init__(self, root: yaml.Node | None):
        self.lines: dict[tuple, int] = {}
        self.duplicates: list[tuple[tuple, int]] = []
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
                if name in seen:
                    self.duplicates.append((path + (name,), key.start_mark.line + 1))
                seen.add(name)
                self.lines[path + (name,)] = key.start_mark.line + 1
                # An item's own line is where its key is written, not where its value starts.
                self._walk(value, path + (name,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,))

    def line(self, loc: tuple) -> int | None:
        path: tuple = ()
        best = self.lines.get((), None)
        for part in loc:
            candidate = path + (part,)
            if candidate not in self.lines:
                # pydantic adds the alias or a type tag to some locations: skip what is not in the file
                continue
            path = candidate
            best = self.lines[path]
        return best


class YamlMapping(dict):
    """A YAML document's top-level mapping, with the line of each of its keys and items."""

    lines: Lines
    source: str


def parse_yaml(text: str, source: str) -> YamlMapping:
    """The mapping ``text`` holds (empty for an empty document); a syntax error, or a top level
    that is not a mapping, is a :class:`ConfigError` naming ``source`` and the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        column = f" (column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{where}: invalid YAML{column}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: (top level): must be a mapping of settings, got {type(data).__name__}")
    mapping = YamlMapping(data)
    mapping.lines, mapping.source = Lines(root), source
    return mapping


def read_text(path: str | Path) -> str:
    """A configuration file's text; a missing, unreadable or non-UTF-8 file is a :class:`ConfigError`."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_yaml(path: str | Path) -> YamlMapping:
    """:func:`parse_yaml` of a file (:func:`read_text`)."""
    return parse_yaml(read_text(path), str(path))


def duplicate_errors(data: YamlMapping) -> list[dict]:
    """Each key written twice in one mapping, as a pydantic-style error."""
    return [{"loc": path, "msg": f"{path[-1]!r} appears twice in the same mapping (the last one would win)"}
            for path, _ in data.lines.duplicates]


def describe_errors(source: str, errors: list[dict], lines: Lines | None = None) -> str:
    """One line per error, ``source:line: dotted.field: message (got value)``, in the file's order;
    without ``lines`` (a value from the environment or a flag), ``source: dotted.field: …``."""
    out = []
    for err in errors:
        loc = tuple(p for p in err["loc"] if p != "[key]")
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = lines.line(loc) if lines is not None else None
        where = f"{source}:{line}" if line else source
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or got is None or "url" in loc else f" (got {got!r})"
        out.append((line or 0, f"{where}: {field}: {str(err['msg']).removeprefix('Value error, ')}{shown}"))
    return "\n".join(text for _, text in sorted(out, key=lambda item: item[0]))


def validate(model: type[BaseModel], data: YamlMapping, extra: dict[str, Any] | None = None,
             error: type[Exception] = ConfigError):
    """``model`` from a file's mapping (and ``extra`` fields that are not the file's); every problem
    of the file, duplicate keys included, as one ``error``."""
    problems = duplicate_errors(data)
    try:
        result = model.model_validate({**data, **(extra or {})})
    except ValidationError as exc:
        problems += exc.errors()
        result = None
    if problems:
        raise error(describe_errors(data.source, problems, data.lines))
    return result
