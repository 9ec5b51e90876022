"""Alertmanager's label matchers: ``name="value"``, ``name!="value"``, ``name=~"re"``, ``name!~"re"``.

Regular expressions are anchored at both ends, as in Alertmanager. Quotes are optional for
simple values (``tier=3``). On a multi-valued name (``indicator``) a positive matcher holds if
any value matches, a negative one if none does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from riskcockpit.alerting.labels import label_values

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.S)
OPS = ("=", "!=", "=~", "!~")


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        body, out, i = raw[1:-1], [], 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                i += 2
                continue
            if ch == '"':
                raise ValueError(f"unescaped quote inside {raw}")
            out.append(ch)
            i += 1
        return "".join(out)
    if raw.startswith(('"', "'")) or raw.endswith(('"', "'")):
        raise ValueError(f"unbalanced quotes in {raw}")
    return raw


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``Matcher.parse('channel=~"card|atm"')``; raises ValueError naming what is wrong."""
        if not isinstance(text, str):
            raise ValueError(f"a matcher is a string such as tier=\"3\" or channel=~\"card|atm\", got {text!r}")
        match = _MATCHER.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a matcher such as tier=\"3\", country!=\"CN\" or channel=~\"card|atm\"")
        name, op, raw = match.groups()
        value = _unquote(raw)
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"^(?:{value})$")
            except re.error as exc:
                raise ValueError(f"{text!r}: invalid regular expression: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: dict[str, str]) -> bool:
        values = label_values(labels, self.name)
        if self.op == "=":
            return self.value in values
        if self.op == "!=":
            return self.value not in values
        hit = any(self._regex.match(v) for v in values)
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def parse_all(texts: list[str]) -> list[Matcher]:
    return [Matcher.parse(t) for t in texts]


def all_match(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
