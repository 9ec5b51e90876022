"""Device, geography and channel: where the entity acts from, and through which door; devices
and countries it never used; one device shared by several accounts."""

from __future__ import annotations

from bisect import bisect_right
from functools import lru_cache
from ipaddress import ip_address
from math import acos, asin, cos, radians, sin, sqrt
from operator import itemgetter
from typing import Annotated

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import NO_HIT, Indicator, Params, register
from riskcockpit.indicators.novelty import Novelty, NoveltyParams
from riskcockpit.indicators.support import SharedParams, distinct_accounts, remember_account, short_history, tally

EARTH_RADIUS_KM = 6371.0


_TIME = itemgetter(0)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km.

    >>> round(haversine_km(31.23, 121.47, 39.90, 116.41))   # Shanghai - Beijing
    1067
    """
    p1, p2 = radians(lat1), radians(lat2)
    a = sin((p2 - p1) / 2) ** 2 + cos(p1) * cos(p2) * sin(radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(a)))


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

    >>> from riskcockpit.indicators.base import tx_at
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

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._first = self.signal(None, False, "no earlier location")

    def score_one(self, state, tx):
        points = state.get("p")
        if not points:
            return self._first
        now = tx.ts_ms
        # The neighbour in event time: the latest point not after this one, else the earliest.
        if points[-1][0] <= now:  # in order: the latest point
            t, lat, lon = points[-1]
        else:
            i = bisect_right(points, now, key=_TIME)
            t, lat, lon = points[i - 1] if i else points[0]
        km = haversine_km(lat, lon, tx.lat, tx.lon)
        p = self.p
        hours = max(abs(now - t), p.min_gap) / 3_600_000
        kmh = km / hours
        hit = km >= p.min_km and kmh > p.max_kmh
        return self.signal(round(kmh, 1), hit, NO_HIT if not hit else
                           f"{km:,.0f} km from the previous location in {hours * 60:,.0f} min ({kmh:,.0f} km/h)")

    def learn_one(self, state, tx):
        points = state.setdefault("p", [])
        points.append([tx.ts_ms, tx.lat, tx.lon])
        if len(points) > 1 and points[-2][0] > tx.ts_ms:
            points.sort(key=_TIME)
        del points[: -self.p.cap]


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

    >>> from riskcockpit.indicators.base import tx_at
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
        p, q = radians(lat), radians(lon)
        cos_p = cos(p)
        return cos_p * cos(q), cos_p * sin(q), sin(p)

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._short = short_history(self, self.p.min_history)
        # (tx, state, vector, km) of the last score, so learning does not redo the trigonometry
        self._scored = (None, None, None, None)
        self._no_home = self.signal(None, False, "no usual location")

    def _km(self, state, v) -> float | None:
        cx, cy, cz = state["c"]
        norm = sqrt(cx * cx + cy * cy + cz * cz)
        if norm < 1e-6:  # points all around the globe: there is no home
            return None
        x, y, z = v
        return EARTH_RADIUS_KM * acos(max(-1.0, min(1.0, (x * cx + y * cy + z * cz) / norm)))

    def score_one(self, state, tx):
        n, p = state.get("n", 0), self.p
        if n < p.min_history:
            return self._short[n]
        v = self._vector(tx.lat, tx.lon)
        km = self._km(state, v)
        self._scored = (tx, state, v, km)
        if km is None:
            return self._no_home
        hit = km > p.km
        return self.signal(round(km, 1), hit,
                           f"{km:,.0f} km from the account's usual location" if hit else NO_HIT)

    def learn_one(self, state, tx):
        p = self.p
        scored_tx, scored_state, v, km = self._scored
        self._scored = (None, None, None, None)
        if scored_tx is not tx or scored_state is not state:  # not just scored: measure here
            v = self._vector(tx.lat, tx.lon)
            km = self._km(state, v) if state.get("n", 0) >= p.min_history else None
        if "c" not in state:
            state.update(c=list(v), n=1)
            return
        if state["n"] >= p.min_history and (km or 0.0) > p.km:
            away = state.setdefault("away", tx.ts_ms)
            if tx.ts_ms - away < p.relocate_after:
                return
            state.clear()
            state.update(c=list(v), n=1)
            return
        state.pop("away", None)
        n = state["n"] + 1
        w = 1 / min(n, p.memory)
        cx, cy, cz = state["c"]
        state["c"] = [cx + w * (v[0] - cx), cy + w * (v[1] - cy), cz + w * (v[2] - cz)]
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

    >>> from riskcockpit.indicators.base import tx_at
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
        self._not_listed = self.signal(0.0, False, "country not listed")

    def score_one(self, state, tx):
        if tx.country in self._countries:
            return self.signal(1.0, True, f"{tx.country} is a high-risk jurisdiction")
        return self._not_listed

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

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = UnusualChannel(min_history=5, share=0.1), {}
    >>> [ind.evaluate(state, tx_at(m, channel="branch")).hit for m in range(6)]
    [False, False, False, False, False, False]
    >>> sig = ind.evaluate(state, tx_at(9, channel="mobile"))
    >>> sig.hit, sig.value
    (True, 0.0)
    """

    name = "unusual_channel"
    risky_tail = "low"  # a rare share of the account's activity is the risk
    family = "device_geo"
    typology = "account takeover through a channel the customer never uses"
    requires = ("channel",)
    Params = UnusualChannelParams
    state_doc = "`c`: transactions per channel (at most `max_channels`, halved past `max_count`); `n`: their total."

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._short = short_history(self, self.p.min_history)

    def score_one(self, state, tx):
        total, p = state.get("n", 0), self.p
        if total < p.min_history:
            return self._short[total]
        share = state["c"].get(tx.channel, 0) / total
        hit = share < p.share
        return self.signal(round(share, 4), hit,
                           f"channel {tx.channel} holds {share:.1%} of the account's activity" if hit else NO_HIT)

    def learn_one(self, state, tx):
        tally(state, tx.channel, self.p.max_count, self.p.max_channels)


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
    >>> ip_prefix("36.12.200.7", 16, 48), ip_prefix("36.12.200.7", 20, 48)
    ('36.12.0.0/16', '36.12.192.0/20')
    """
    if ":" not in ip and not ipv4_bits % 8:
        # IPv4 cut at an octet: text is enough, as the contract keeps addresses canonical.
        kept = ip.split(".")[: ipv4_bits // 8]
        return ".".join(kept + ["0"] * (4 - len(kept))) + f"/{ipv4_bits}"
    address = ip_address(ip)
    bits = ipv4_bits if address.version == 4 else ipv6_bits
    shift = address.max_prefixlen - bits
    return f"{type(address)((int(address) >> shift) << shift)}/{bits}"


@register
class NewIpPrefix(Novelty):
    """An IP network (/24, IPv6 /48) the account has not used before.

    Networks, not addresses: a home router's address changes daily, its provider's block
    does not, while a fraudster's proxy or foreign mobile network is a different block.

    >>> from riskcockpit.indicators.base import tx_at
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

    def _value(self, tx):
        return ip_prefix(tx.ip, self.p.ipv4_prefix, self.p.ipv6_prefix)


@register
class NewDevice(Novelty):
    """A device the account has not used before.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = NewDevice(min_history=1, fresh="30m"), {}
    >>> [ind.evaluate(state, tx_at(m, device_id=d)).hit for m, d in enumerate("aabb")]
    [False, False, True, True]
    >>> ind.evaluate(state, tx_at(90, device_id="b")).reason
    'known device_id'

    """

    name = "new_device"
    family = "device_geo"
    typology = "account takeover from a fraudster's device"
    requires = ("device_id",)
    field = "device_id"


@register
class NewCountry(Novelty):
    """A country the account has not transacted from before.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = NewCountry(min_history=2), {}
    >>> [ind.evaluate(state, tx_at(m, country=c)).hit for m, c in enumerate(["CN", "CN", "CN", "RU"])]
    [False, False, False, True]
    """

    name = "new_country"
    family = "device_geo"
    typology = "account takeover from abroad, compromised card used cross-border"
    requires = ("country",)
    field = "country"


@register
class DeviceShared(Indicator):
    """One device used by several accounts within the window.

    People rarely share phones across bank accounts; a fraudster working through a list of
    taken-over accounts, or a mule herder operating recruits' accounts, does.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = DeviceShared(window="24h", accounts=3), {}
    >>> [ind.evaluate(state, tx_at(m, device_id="D9", account_id=a)).value for m, a in enumerate("AABC")]
    [1.0, 1.0, 2.0, 3.0]
    >>> ind.evaluate(state, tx_at(5, device_id="D9", account_id="D")).reason
    'device D9: 4 accounts within 24h'
    >>> ind.evaluate(state, tx_at(60 * 30, device_id="D9", account_id="A")).value  # a day later
    1.0
    """

    name = "device_shared"
    family = "device_geo"
    typology = "account takeover rings, mule herding (one device operating many accounts)"
    entity = "device"
    requires = ("device_id",)
    Params = SharedParams
    state_doc = "per device: `w`: [latest time, account] per account seen in the window, at most `cap`."

    def score_one(self, state, tx):
        n = distinct_accounts(state, tx, self.params.window)
        return self.signal(float(n), n >= self.params.accounts,
                           lambda: f"device {tx.device_id}: {n} accounts within {self.params.window // 3_600_000}h")

    def learn_one(self, state, tx):
        remember_account(state, tx, self.params.window, self.params.cap)
