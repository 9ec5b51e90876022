"""The three tiers of the risk system: 1 watch, 2 review, 3 critical (0: no tier).

The names are the ones configs use (``tiers:`` in indicators.yaml, ``tier`` matchers in
alerting.yaml) and people read in English; the cockpit and the notifier translate them.

>>> TIER_NAMES[3], LEVELS["review"]
('critical', 2)
"""

from __future__ import annotations

from typing import Literal

TierName = Literal["watch", "review", "critical"]
TIER_NAMES: dict[int, str] = {1: "watch", 2: "review", 3: "critical"}
LEVELS: dict[str, int] = {name: level for level, name in TIER_NAMES.items()}
