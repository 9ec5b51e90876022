"""Device, geography and channel: where the entity acts from, and through which door."""

from __future__ import annotations

import math
from bisect import bisect_right
from functools import lru_cache
from ipaddress import ip_address
from operator import itemgetter
from typing import Annotated

from pydantic import Field

from indicators.base import DurationMs, Indicator, Params, register
from indicators.novelty import Novelty, NoveltyParams
from indicators.support import tally

EARTH_RADIUS_KM = 6371.0
_TIME = itemgetter(0)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km.

    >>> round(haversine_km(31.23, 121.47, 39.90, 116.41))   # Shanghai - Beijing
    1067
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


class ImpossibleTravelParams(Params):
    max_kmh: float = Field(900.0, gt=0,
        description="hit above this speed; 900 km/h is an airliner's cruise, door to door is slower")
    min_km: float = Field(200.0, ge=0,
        description="hops shorter than this never count: IP and cell geolocation is off by tens to a few hundred km")
    min_gap: DurationMs = Field(60_000,
        description="gaps shorter than this are taken as this long, so points seconds apart do not divide by ~0")
    cap: int = Field(4, ge=1, description="recent locations kept per entity (late events find their neighbour)")


@register
class ImpossibleTravel(Indicator):
    """Speed needed to get from the entity's previous location (in event time) to this one.

    Value: km/h (distance over the time gap, the gap floored at ``min_gap``).

    >>> from indicators.base import tx_at
    >>> ind, state = ImpossibleTravel(), {}
    >>> ind.evaluate(state, tx_at(0, lat=31.23, lon=121.47)).value is None   # Shanghai
    True
    >>> sig = ind.evaluate(state, tx_at(60, lat=39.90, lon=116.41))         # Beijing an hour later
    >>> sig.hit, round(sig.value)
    (True, 1067)
    >>> ind.evaluate(state, tx_at(240, lat=31.23, lon=121.47)).hit          # back, three hours later
    False
    """

    name = "impossible_travel"
    family = "device_geo"
    typology = "account takeover from elsewhere, cloned card used far from the holder"
    requires = ("lat", "lon")
    Params = ImpossibleTravelParams
    state_doc = "`p`: the latest `cap` locations as [time, lat, lon], in time order."

    def score_one(self, state, tx):
        points = state.get("p")
        if not points:
            return self.signal(None, False, "no earlier location")
        # The neighbour in event time: the latest point not after this one, else the earliest.
        i = bisect_right(points, tx.ts_ms, key=_TIME)
        t, lat, lon = points[i - 1] if i else points[0]
        km = haversine_km(lat, lon, tx.lat, tx.lon)
        hours = max(abs(tx.ts_ms - t), self.params.min_gap) / 3_600_000
        kmh = km / hours
        return self.signal(round(kmh, 1), km >= self.params.min_km and kmh > self.params.max_kmh,
                       lambda: f"{km:,.0f} km from the previous location in {hours * 60:,.0f} min ({kmh:,.0f} km/h)")

    def learn_one(self, state, tx):
        points = state.setdefault("p", [])
        points.append([tx.ts_ms, tx.lat, tx.lon])
        if len(points) > 1 and points[-2][0] > tx.ts_ms:
            points.sort(key=_TIME)
        del points[: -self.params.cap]


class GeoDistanceFromHomeParams(Params):
    km: float = Field(500.0, gt=0, description="hit farther than this from the entity's usual location")
    min_history: int = Field(3, ge=1, description="located transactions before the usual location is trusted")
    memory: int = Field(50, ge=1, description="a point near home weighs 1/min(n, memory) in the running centroid")
    relocate_after: DurationMs = Field(7 * 86_400_000,
        description="far points are not learned; when every located transaction for this long was far, the entity "
                    "has moved and home restarts there")


@register
class GeoDistanceFromHome(Indicator):
    """Distance in km from the entity's usual location, a running centroid of where it acted.

    The centroid is a running mean of unit vectors on the sphere, so it stays right across
    the antimeridian and the poles where averaging degrees would not. Points beyond ``km``
    are not learned: a fraudster's twenty payments from the other side of the world would
    drag the centroid hundreds of km and the owner's next payments would hit. A real move
    is recognised by time: after ``relocate_after`` with every point far, home restarts.

    >>> from indicators.base import tx_at
    >>> ind, state = GeoDistanceFromHome(min_history=2), {}
    >>> [ind.evaluate(state, tx_at(m, lat=31.2, lon=121.5)).value for m in range(3)]
    [None, None, 0.0]
    >>> sig = ind.evaluate(state, tx_at(9, lat=55.76, lon=37.62))     # Moscow
    >>> sig.hit, round(sig.value, -2)
    (True, 6800.0)
    """

    name = "geo_distance_from_home"
    family = "device_geo"
    typology = "account takeover from abroad, card used far from the holder"
    requires = ("lat", "lon")
    Params = GeoDistanceFromHomeParams
    state_doc = ("`c`: the usual location as a running mean of unit vectors [x, y, z]; `n`: points learned; `away`: "
                 "when the current run of far points began (absent when at home).")

    @staticmethod
    def _vector(lat: float, lon: float) -> tuple[float, float, float]:
        p, q = math.radians(lat), math.radians(lon)
        return math.cos(p) * math.cos(q), math.cos(p) * math.sin(q), math.sin(p)

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._scored = (None, None)  # (tx, km) of the last score, so learning does not redo the trigonometry

    def _km(self, state, tx) -> float | None:
        if self._scored[0] is tx:
            return self._scored[1]
        cx, cy, cz = state["c"]
        norm = math.sqrt(cx * cx + cy * cy + cz * cz)
        if norm < 1e-6:  # points all around the globe: there is no home
            return None
        x, y, z = self._vector(tx.lat, tx.lon)
        return EARTH_RADIUS_KM * math.acos(max(-1.0, min(1.0, (x * cx + y * cy + z * cz) / norm)))

    def score_one(self, state, tx):
        n = state.get("n", 0)
        if n < self.params.min_history:
            return self.signal(None, False, f"history of {n} < {self.params.min_history}")
        km = self._km(state, tx)
        self._scored = (tx, km)
        if km is None:
            return self.signal(None, False, "no usual location")
        return self.signal(round(km, 1), km > self.params.km,
                       lambda: f"{km:,.0f} km from the account's usual location")

    def learn_one(self, state, tx):
        v = self._vector(tx.lat, tx.lon)
        if "c" not in state:
            state.update(c=list(v), n=1)
            return
        if state["n"] >= self.params.min_history and (self._km(state, tx) or 0.0) > self.params.km:
            away = state.setdefault("away", tx.ts_ms)
            if tx.ts_ms - away < self.params.relocate_after:
                return
            state.clear()
            state.update(c=list(v), n=1)
            return
        state.pop("away", None)
        n = state["n"] + 1
        w = 1 / min(n, self.params.memory)
        state["c"] = [ci + w * (vi - ci) for ci, vi in zip(state["c"], v)]
        state["n"] = n


Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]


class HighRiskCountryParams(Params):
    countries: tuple[Country, ...] = Field(
        ("KP", "IR", "MM"),
        description="ISO 3166 alpha-2 codes. Default: the FATF 'high-risk jurisdictions subject to a call for "
                    "action' (blacklist) as known in 2025: North Korea, Iran, Myanmar. Review after each FATF "
                    "plenary (Feb, Jun, Oct); add grey-list or sanctions jurisdictions as the bank's policy requires",
    )


@register
class HighRiskCountry(Indicator):
    """A transaction booked in a jurisdiction on the bank's high-risk list.

    >>> from indicators.base import tx_at
    >>> ind = HighRiskCountry()
    >>> [ind.evaluate({}, tx_at(0, country=c)).hit for c in ("CN", "IR", "MM")]
    [False, True, True]
    """

    name = "high_risk_country"
    family = "device_geo"
    typology = "sanctions evasion, terrorist financing, laundering through high-risk jurisdictions"
    requires = ("country",)
    Params = HighRiskCountryParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._countries = frozenset(self.params.countries)

    def score_one(self, state, tx):
        if tx.country in self._countries:
            return self.signal(1.0, True, f"{tx.country} is a high-risk jurisdiction")
        return self.signal(0.0, False, "country not listed")

    def learn_one(self, state, tx):
        pass  # stateless


class UnusualChannelParams(Params):
    share: float = Field(0.05, gt=0, lt=1,
        description="hit if the channel holds less than this share of the entity's history")
    min_history: int = Field(10, ge=1, description="transactions before the profile is trusted")
    max_count: int = Field(1000, ge=10, description="counts are halved past this, so old habits fade")
    max_channels: int = Field(16, ge=2,
        description="channels remembered per entity (bounds state); the rarest is forgotten first")


@register
class UnusualChannel(Indicator):
    """A channel the entity rarely or never uses (a branch-only customer suddenly on mobile).

    >>> from indicators.base import tx_at
    >>> ind, state = UnusualChannel(min_history=5, share=0.1), {}
    >>> [ind.evaluate(state, tx_at(m, channel="branch")).hit for m in range(6)]
    [False, False, False, False, False, False]
    >>> sig = ind.evaluate(state, tx_at(9, channel="mobile"))
    >>> sig.hit, sig.value
    (True, 0.0)
    """

    name = "unusual_channel"
    family = "device_geo"
    typology = "account takeover through a channel the customer never uses"
    requires = ("channel",)
    Params = UnusualChannelParams
    state_doc = "`c`: transactions per channel (at most `max_channels`, halved past `max_count`); `n`: their total."

    def score_one(self, state, tx):
        total = state.get("n", 0)
        if total < self.params.min_history:
            return self.signal(None, False, f"history of {total} < {self.params.min_history}")
        share = state["c"].get(tx.channel, 0) / total
        return self.signal(round(share, 4), share < self.params.share,
                       lambda: f"channel {tx.channel} holds {share:.1%} of the account's activity")

    def learn_one(self, state, tx):
        tally(state, tx.channel, self.params.max_count, self.params.max_channels)


class NewIpPrefixParams(NoveltyParams):
    ipv4_prefix: int = Field(24, ge=8, le=32,
        description="IPv4 addresses in the same /n network count as one (a household or office NAT)")
    ipv6_prefix: int = Field(48, ge=16, le=128,
        description="IPv6 addresses in the same /n network count as one (one customer site)")


@lru_cache(maxsize=65_536)
def ip_prefix(ip: str, ipv4_bits: int, ipv6_bits: int) -> str:
    """The network an address belongs to, as text.

    >>> ip_prefix("36.12.200.7", 24, 48), ip_prefix("2001:db8:1:2::5", 24, 48)
    ('36.12.200.0/24', '2001:db8:1::/48')
    """
    address = ip_address(ip)
    bits = ipv4_bits if address.version == 4 else ipv6_bits
    shift = address.max_prefixlen - bits
    return f"{type(address)((int(address) >> shift) << shift)}/{bits}"


class _WithPrefix:
    """A transaction seen through its IP network, for the novelty mechanism."""

    __slots__ = ("_tx", "ip_prefix")

    def __init__(self, tx, prefix: str):
        self._tx, self.ip_prefix = tx, prefix

    def __getattr__(self, name):
        return getattr(self._tx, name)


@register
class NewIpPrefix(Novelty):
    """An IP network (/24, IPv6 /48) the account has not used before.

    Networks, not addresses: a home router's address changes daily, its provider's block
    does not, while a fraudster's proxy or foreign mobile network is a different block.

    >>> from indicators.base import tx_at
    >>> ind, state = NewIpPrefix(min_history=2, fresh=0), {}
    >>> [ind.evaluate(state, tx_at(m, ip=ip)).hit for m, ip in enumerate(
    ...     ["36.1.2.3", "36.1.2.99", "36.1.2.4", "185.7.7.7"])]
    [False, False, False, True]
    """

    name = "new_ip_prefix"
    family = "device_geo"
    typology = "account takeover from a fraudster's network, proxies, foreign mobile networks"
    requires = ("ip",)
    field = "ip_prefix"
    Params = NewIpPrefixParams

    def _view(self, tx):
        return _WithPrefix(tx, ip_prefix(tx.ip, self.params.ipv4_prefix, self.params.ipv6_prefix))

    def score_one(self, state, tx):
        return super().score_one(state, self._view(tx))

    def learn_one(self, state, tx):
        super().learn_one(state, self._view(tx))
