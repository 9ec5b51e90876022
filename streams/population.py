"""The population of the synthetic stream: accounts with habits, and how normal traffic picks them.

Normal traffic
--------------
Every account gets a set of habits drawn once from the seed: home country and
city (lat/lon), home currency, a log-normal "typical amount", a day profile
(an archetype such as office-hours or night-owl, shifted to the account's local
time), preferred channels, 3-8 usual counterparties, a handful of usual
merchants, 1-2 usual devices and an activity weight (Pareto-distributed, so a
few accounts are far busier than the rest). About 2% of accounts are dormant:
they never transact except through the ``dormant_reactivation`` scenario.

Normal transactions arrive as a Poisson process of ``rate`` per second of
*event time*. For each arrival the account is drawn by ``activity * day
profile at the account's local hour``, so the traffic mix visibly follows the
clock. Amounts, channels, counterparties, merchants, devices and location all
come from the account's habits; about 1.5% of card payments are declined and a
small share of card payments are cross-border (online shopping / travel).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass

CHANNELS = ("card", "transfer", "atm", "mobile", "branch")

# Approximate CNY value of one unit; only used so that habits drawn in CNY
# translate to plausible amounts in the account's own currency.
FX_TO_CNY = {"CNY": 1.0, "USD": 7.2, "EUR": 7.8, "HKD": 0.92}

# (city, lat, lon, utc offset in hours). DST is ignored on purpose: an hour's
# shift in the day profile is invisible at this level of realism.
CITIES: dict[str, tuple[tuple[str, float, float, int], ...]] = {
    "CN": (
        ("Shanghai", 31.23, 121.47, 8),
        ("Beijing", 39.90, 116.41, 8),
        ("Shenzhen", 22.54, 114.06, 8),
        ("Guangzhou", 23.13, 113.26, 8),
        ("Chengdu", 30.57, 104.07, 8),
        ("Hangzhou", 30.27, 120.16, 8),
        ("Wuhan", 30.59, 114.31, 8),
        ("Xi'an", 34.34, 108.94, 8),
        ("Nanjing", 32.06, 118.80, 8),
        ("Chongqing", 29.56, 106.55, 8),
    ),
    "HK": (("Hong Kong", 22.32, 114.17, 8),),
    "SG": (("Singapore", 1.35, 103.82, 8),),
    "GB": (("London", 51.51, -0.13, 0), ("Manchester", 53.48, -2.24, 0)),
    "US": (
        ("New York", 40.71, -74.01, -5),
        ("San Francisco", 37.77, -122.42, -8),
        ("Los Angeles", 34.05, -118.24, -8),
    ),
    "DE": (("Berlin", 52.52, 13.40, 1), ("Frankfurt", 50.11, 8.68, 1), ("Munich", 48.14, 11.58, 1)),
}

HOME_COUNTRY_WEIGHTS = (("CN", 0.86), ("HK", 0.05), ("SG", 0.03), ("GB", 0.02), ("US", 0.02), ("DE", 0.02))

# (currency, probability) per home country; the contract only knows these four.
HOME_CURRENCY = {
    "CN": (("CNY", 0.96), ("USD", 0.04)),
    "HK": (("HKD", 0.8), ("USD", 0.2)),
    "SG": (("USD", 1.0),),
    "GB": (("EUR", 0.5), ("USD", 0.5)),
    "US": (("USD", 1.0),),
    "DE": (("EUR", 1.0),),
}

# Legitimate cross-border card activity (online shops, travel). Kept disjoint
# from ATO_COUNTRIES so a takeover country is guaranteed new for the victim.
TRAVEL_COUNTRIES = ("JP", "KR", "TH", "US", "GB", "SG", "HK", "DE", "FR", "AU", "CN")

# Merchant category codes with rough popularity weights.
MCC_WEIGHTS = (
    ("5411", 18), ("5812", 14), ("5814", 12), ("5541", 6), ("5311", 5), ("5912", 5),
    ("4111", 7), ("4121", 5), ("5999", 6), ("5732", 3), ("5651", 4), ("7011", 2),
    ("4511", 1), ("5815", 4), ("5977", 3), ("4900", 3), ("5945", 1), ("5691", 1),
)
N_MERCHANTS = 20_000
# External counterparties of normal traffic live below this id; scenario
# "new" counterparties are numbered from here up, so they are never usual.
N_EXTERNAL_COUNTERPARTIES = 800_000

IP_FIRST_OCTETS = {
    "CN": (36, 58, 59, 60, 61, 101, 106, 110, 111, 112, 113, 114, 115, 116, 117, 119, 120,
           121, 122, 123, 124, 125, 180, 182, 183, 202, 211, 218, 219, 220, 221, 222, 223),
    "HK": (14, 42, 58, 103, 113, 119, 202, 203),
    "SG": (8, 13, 52, 101, 116, 175, 203),
    "GB": (2, 5, 31, 51, 77, 81, 86, 90, 212),
    "US": (3, 4, 8, 12, 23, 24, 50, 63, 64, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 98, 99),
    "DE": (2, 5, 31, 46, 77, 78, 79, 80, 84, 85, 87, 88, 89, 91, 93),
}
DORMANT_SHARE = 0.02


def _bumps(centres: tuple[float, ...], width: float, floor: float) -> tuple[float, ...]:
    """Day curve over local hours 0..23, max 1, with a floor so nobody is ever impossible."""
    vals = []
    for h in range(24):
        v = 0.0
        for c in centres:
            d = min(abs(h - c), 24 - abs(h - c))
            v += math.exp(-d * d / (2 * width * width))
        vals.append(v)
    top = max(vals)
    return tuple(floor + (1 - floor) * v / top for v in vals)


# Day-profile archetypes over *local* hours; an account additionally gets a
# personal +-1h shift, so peaks differ between people with the same archetype.
ARCHETYPES: dict[str, tuple[float, tuple[float, ...]]] = {
    "office": (0.30, _bumps((10.0, 15.5), 1.8, 0.04)),
    "evening": (0.25, _bumps((20.0,), 2.0, 0.04)),
    "lunch_dinner": (0.20, _bumps((12.0, 19.0), 1.3, 0.04)),
    "early_bird": (0.10, _bumps((7.5,), 1.8, 0.04)),
    "night_owl": (0.07, _bumps((23.5, 1.5), 1.8, 0.05)),
    "flat": (0.08, _bumps((13.0,), 6.0, 0.30)),
}

@dataclass(frozen=True, slots=True)
class AccountProfile:
    """Habits of one account, drawn once per seed. Exposed for tests and tooling."""

    index: int
    account_id: str
    home_country: str
    city: str
    lat: float
    lon: float
    utc_offset: int  # local hour = UTC hour + utc_offset (incl. personal shift), mod 24
    currency: str
    mu: float  # log of typical amount, in the account currency
    sigma: float
    archetype: str
    activity: float
    dormant: bool
    channel_cum: tuple[float, ...]  # cumulative channel probabilities, aligned with CHANNELS
    counterparties: tuple[str, ...]
    merchants: tuple[tuple[str, str], ...]  # (merchant_id, mcc)
    devices: tuple[tuple[str, str], ...]  # (device_id, ip)
    travel_countries: tuple[str, ...]

    @property
    def typical_amount(self) -> float:
        return math.exp(self.mu)

    @property
    def channel_weights(self) -> dict[str, float]:
        prev = 0.0
        out = {}
        for ch, c in zip(CHANNELS, self.channel_cum, strict=True):
            c = min(c, 1.0)
            out[ch] = c - prev
            prev = c
        return out


def pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    r = rng.random() * sum(w for _, w in weighted)
    for item, w in weighted:
        r -= w
        if r < 0:
            return item
    return weighted[-1][0]


def random_ip(rng: random.Random, octets: tuple[int, ...]) -> str:
    return f"{rng.choice(octets)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


_MCC_CUM: list[float] = []
_MCC_TOTAL = 0.0
for _, _w in MCC_WEIGHTS:
    _MCC_TOTAL += _w
    _MCC_CUM.append(_MCC_TOTAL)


def merchant_mcc(m: int) -> str:
    # Merchant -> MCC is a pure function of the merchant id, so a merchant has
    # one category everywhere in the stream without storing a 20k-entry table.
    h = (m * 2654435761) % 4294967296 / 4294967296.0
    return MCC_WEIGHTS[bisect_right(_MCC_CUM, h * _MCC_TOTAL)][0]


def cumulative(weights: list[float]) -> tuple[list[float], float]:
    """Cumulative weights whose last entry is +inf, so bisect never runs off the end."""
    cum = []
    s = 0.0
    for w in weights:
        s += w
        cum.append(s)
    if cum:
        cum[-1] = math.inf
    return cum, s


def draw_profiles(rng: random.Random, n: int) -> list[AccountProfile]:
    """Habits of ``n`` accounts, drawn from ``rng`` in account order."""
    # Tiny populations get no dormant accounts so normal traffic always exists.
    n_dormant = round(n * DORMANT_SHARE) if n >= 10 else 0
    dormant = set(rng.sample(range(n), n_dormant))
    arche = tuple((name, w) for name, (w, _) in ARCHETYPES.items())
    base_channel = (0.45, 0.15, 0.10, 0.25, 0.05)
    profiles = []
    for i in range(n):
        country = pick(rng, HOME_COUNTRY_WEIGHTS)
        city, clat, clon, tz = rng.choice(CITIES[country])
        currency = pick(rng, HOME_CURRENCY[country])
        fx = FX_TO_CNY[currency]
        # Typical payment ~150 CNY with wide spread between people.
        mu = rng.gauss(math.log(150.0), 0.8) - math.log(fx)
        sigma = rng.uniform(0.45, 1.0)
        archetype = pick(rng, arche)
        shift = rng.choice((-1, 0, 0, 1))
        activity = min(rng.paretovariate(1.5), 100.0)
        ch = [b * rng.expovariate(1.0) + 0.01 for b in base_channel]
        tot = sum(ch)
        cum, s = [], 0.0
        for w in ch:
            s += w / tot
            cum.append(s)
        cum[-1] = 2.0  # channel pick loops while r >= cum; 2.0 always stops it
        cps = []
        for _ in range(rng.randint(3, 8)):
            if n > 1 and rng.random() < 0.3:
                j = rng.randrange(n)
                if j != i:
                    cps.append(f"A{j:06d}")
                    continue
            cps.append(f"C{rng.randrange(N_EXTERNAL_COUNTERPARTIES):06d}")
        merchants = []
        for _ in range(rng.randint(4, 12)):
            m = rng.randrange(N_MERCHANTS)
            merchants.append((f"M{m:05d}", merchant_mcc(m)))
        octets = IP_FIRST_OCTETS[country]
        devices = tuple((f"D{i * 2 + k:08d}", random_ip(rng, octets)) for k in range(rng.randint(1, 2)))
        profiles.append(
            AccountProfile(
                index=i,
                account_id=f"A{i:06d}",
                home_country=country,
                city=city,
                lat=round(clat + rng.uniform(-0.08, 0.08), 4),
                lon=round(clon + rng.uniform(-0.08, 0.08), 4),
                utc_offset=tz + shift,
                currency=currency,
                mu=mu,
                sigma=sigma,
                archetype=archetype,
                activity=activity,
                dormant=i in dormant,
                channel_cum=tuple(cum),
                counterparties=tuple(cps),
                merchants=tuple(merchants),
                devices=devices,
                travel_countries=tuple(c for c in TRAVEL_COUNTRIES if c != country),
            )
        )
    return profiles


def selection_tables(profiles: list[AccountProfile]) -> tuple[list, list]:
    """(groups, hour_tables): how the stream draws the account of a normal transaction at a UTC hour."""
    # Accounts are grouped by (archetype, local offset): the group's weight
    # at a UTC hour is sum(activity) * curve(local hour), then an account is
    # drawn inside the group by activity. Two bisects per transaction and
    # memory independent of 24 x accounts.
    groups: dict[tuple[str, int], list[AccountProfile]] = {}
    for p in profiles:
        if not p.dormant:
            groups.setdefault((p.archetype, p.utc_offset), []).append(p)
    groups_out = []
    group_meta = []
    for (arch, off), members in sorted(groups.items()):
        cum, total = cumulative([p.activity for p in members])
        groups_out.append((members, cum, total))
        group_meta.append((ARCHETYPES[arch][1], off, total))
    hour_tables = []
    for h in range(24):
        hour_tables.append(
            cumulative([total * curve[(h + off) % 24] for curve, off, total in group_meta])
        )
    return groups_out, hour_tables
