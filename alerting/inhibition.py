"""Inhibition: an open alert of one kind mutes notifications of lesser ones on the same entity.

The usual rule: a tier-3 alert on an account mutes tier-1 and tier-2 notifications for that
account while it is open, i.e. until someone acknowledges or closes it (``risk.actions``) or it
outlives the alert TTL. As in Alertmanager, an alert never inhibits itself, and ``equal`` names
the labels source and target must share.
"""

from __future__ import annotations

from collections import defaultdict

from riskcockpit.alerting.config import InhibitRule
from riskcockpit.alerting.matchers import all_match


class Inhibitor:
    def __init__(self, rules: list[InhibitRule]):
        self.rules = rules
        # rule index -> equal-label values -> ids of open source alerts
        self._sources: list[dict[tuple, set[str]]] = [defaultdict(set) for _ in rules]
        self._keys: dict[str, list[tuple[int, tuple]]] = {}

    @staticmethod
    def _equal(rule: InhibitRule, labels: dict[str, str]) -> tuple:
        return tuple(labels.get(name, "") for name in rule.equal)

    def opened(self, alert_id: str, labels: dict[str, str]) -> None:
        for i, rule in enumerate(self.rules):
            if all_match(rule.source_matchers, labels):
                key = self._equal(rule, labels)
                self._sources[i][key].add(alert_id)
                self._keys.setdefault(alert_id, []).append((i, key))

    def closed(self, alert_id: str) -> None:
        for i, key in self._keys.pop(alert_id, []):
            holders = self._sources[i].get(key)
            if holders is not None:
                holders.discard(alert_id)
                if not holders:
                    del self._sources[i][key]

    def inhibited_by(self, alert_id: str, labels: dict[str, str]) -> list[str]:
        """Ids of open alerts that mute this one (empty: not inhibited)."""
        found: list[str] = []
        for i, rule in enumerate(self.rules):
            if not all_match(rule.target_matchers, labels):
                continue
            holders = self._sources[i].get(self._equal(rule, labels), ())
            found.extend(h for h in holders if h != alert_id)
        return found
