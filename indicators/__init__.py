"""The risk indicator library: every family module registers its indicators on import."""

from riskcockpit.indicators import aml, amount, card_testing, novelty, timing, velocity  # noqa: F401
from riskcockpit.indicators import aml_flows, amount_profile, bursts, card_probing, counterparty, dormancy, geo  # noqa: F401
from riskcockpit.indicators import shared  # noqa: F401
from riskcockpit.indicators.base import REGISTRY, Indicator, Signal

__all__ = ["REGISTRY", "Indicator", "Signal"]
