"""The route tree, as in Alertmanager: which receivers an alert reaches, and how it is grouped.

Routes are tried depth first. A route whose matchers all hold is a match; its children are
tried in order, and if none matches the route itself is the result. Among siblings the first
match stops the search unless it says ``continue: true``. Children inherit receivers,
``group_by``, the three timers and ``escalation`` from their parent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from riskcockpit.alerting.config import AlertingConfig, RouteConfig
from riskcockpit.alerting.matchers import Matcher, all_match

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


@dataclass
class Route:
    id: str
    matchers: list[Matcher]
    receivers: list[str]
    continue_: bool
    group_by: list[str]
    group_wait: float
    group_interval: float
    repeat_interval: float
    escalation: list[str]
    name: str | None = None
    children: list[Route] = field(default_factory=list)

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        if "..." in self.group_by:
            return dict(sorted(labels.items()))
        return {name: labels.get(name, "") for name in self.group_by}

    def group_key(self, labels: dict[str, str]) -> str:
        """Stable across processes and restarts: route id plus the grouping labels."""
        return f"{self.id}:{json.dumps(self.group_labels(labels), sort_keys=True, ensure_ascii=False)}"

    def describe(self) -> str:
        matchers = ", ".join(str(m) for m in self.matchers) or "(all)"
        label = f" {self.name}" if self.name else ""
        return f"route {self.id}{label} [{matchers}]"


def _resolve(config: RouteConfig, parent: Route | None, route_id: str) -> Route:
    def pick(name, default):
        own = getattr(config, name)
        if own is not None:
            return own
        return getattr(parent, name) if parent is not None else default

    route = Route(
        id=route_id,
        matchers=list(config.matchers),
        receivers=list(config.receivers if config.receivers is not None else (parent.receivers if parent else [])),
        continue_=config.continue_,
        group_by=list(pick("group_by", [])),
        group_wait=pick("group_wait", DEFAULT_GROUP_WAIT),
        group_interval=pick("group_interval", DEFAULT_GROUP_INTERVAL),
        repeat_interval=pick("repeat_interval", DEFAULT_REPEAT_INTERVAL),
        escalation=list(pick("escalation", [])),
        name=config.name,
    )
    route.children = [_resolve(child, route, f"{route_id}.{i}") for i, child in enumerate(config.routes)]
    return route


class Router:
    def __init__(self, config: AlertingConfig):
        self.root = _resolve(config.route, None, "0")

    def match(self, labels: dict[str, str]) -> list[Route]:
        """The routes an alert with these labels ends at, in tree order (never empty)."""
        return self._match(self.root, labels) or [self.root]

    def _match(self, route: Route, labels: dict[str, str]) -> list[Route]:
        if not all_match(route.matchers, labels):
            return []
        found: list[Route] = []
        for child in route.children:
            hits = self._match(child, labels)
            if hits:
                found.extend(hits)
                if not child.continue_:
                    break
        return found or [route]

    def receivers(self, labels: dict[str, str]) -> list[str]:
        seen: dict[str, None] = {}
        for route in self.match(labels):
            for name in route.receivers:
                seen.setdefault(name)
        return list(seen)

    def walk(self):
        stack = [self.root]
        while stack:
            route = stack.pop()
            yield route
            stack.extend(reversed(route.children))
