"""The risk indicator library, one module per family; each registers its indicators on import."""

from riskcockpit.indicators import aml, amount, card_testing, counterparty, device_geo, timing, velocity  # noqa: F401
from riskcockpit.indicators.base import REGISTRY, Indicator, Signal

__all__ = ["REGISTRY", "Indicator", "Signal"]
