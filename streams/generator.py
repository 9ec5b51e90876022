"""Deterministic synthetic bank-transaction stream with injected fraud scenarios.

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

Field conventions
-----------------
``country`` is the country the transaction is booked in: the merchant's for
card payments, the session's for logins from abroad, the beneficiary's for
outbound cross-border transfers, otherwise the home country. ``lat``/``lon``
locate the account holder (or whoever is using the credentials). Device and
IP are present only where the customer initiates the payment from a device
(mobile/online debits, online card payments). Normal transactions carry
``attributes == {}``; scenario transactions carry
``{"scenario": NAME, "incident": "<NAME>-<n>"}`` - nothing else, so consumers
can treat them as ground-truth labels.

Injected scenarios (why each looks like the fraud it mimics)
------------------------------------------------------------
``account_takeover``
    A criminal who has phished the credentials logs in from their own phone in
    another country and drains the account quickly before the owner notices:
    4-8 debits of 5-20x the account's typical amount within a few minutes, all
    from one device and one foreign country the account has never used (from a
    pool that normal traffic never touches), to fresh counterparties (mules),
    via mobile/transfer.
``structuring``
    Smurfing around the cash-transaction reporting rule: 4-7 cash deposits or
    transfers, each between 90% and 99% of ``REPORTING_THRESHOLD`` (CNY), spread
    over a few hours on one CNY account so that no single one is reported.
``card_testing``
    A fraudster validating stolen card numbers before selling/using them:
    10-25 tiny (0.5-5.0) online card payments at distinct merchants (mostly
    digital goods) within minutes, from an unknown device, with 40-70% of them
    declined because many of the tested card details are wrong or blocked.
``mule``
    A money-mule account used to layer stolen funds: 4-8 credits from distinct,
    previously unseen senders (fan-in) followed within an hour by 1-3 debits
    that pass 90-98% of the money on (the mule keeps a cut) to new
    beneficiaries, usually abroad (fan-out).
``dormant_reactivation``
    A long-inactive account whose credentials were bought or taken over and is
    suddenly used: 1-3 large debits (10-40x typical) from a new device to new
    beneficiaries.
``fraud_ring``
    One ring of fraudsters working through a list of taken-over accounts: 3-5
    victims within the hour, each drained by 1-3 mobile debits at home (no
    foreign country to give it away) from one of the ring's two phones to one of
    its two collection accounts. Six rings recur across incidents, so only the
    device's and the beneficiary's view shows the pattern.
``merchant_cash_out``
    Stolen cards cashed out through a colluding merchant: 2-4 victims' cards
    buy 1-2 times each, for several times their usual amount, at one of six
    merchants that recur across incidents, so confirmed frauds cluster there.

Scenarios start at random normal-traffic moments, with a per-arrival start
probability chosen so that ``fraud_share`` of all transactions belong to
scenarios. Their transactions are scheduled strictly after the start moment
and merged into the stream through a heap, so the whole stream stays in
event-time order. The stream is treated as a window onto an ongoing process:
incidents that would have started before ``start`` (up to each scenario's
maximum span) are simulated too and their not-yet-due transactions are
emitted, so slow scenarios (structuring spans hours, mule about an hour) are
present from the first transaction and the fraud share is on target from the
beginning, whatever the rate. Consequently an incident may be seen only
partially at the start of the stream (e.g. a mule's fan-out without its
fan-in). Normal transactions follow the Poisson arrival process exactly;
scenario transactions are extra, interleaved arrivals.

The module is pure Python (stdlib ``random.Random``) and holds no Kafka code;
``pace`` throttles any iterable to a wall-clock rate for live replay.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Iterable, Iterator

__all__ = [
    "SCENARIOS",
    "REPORTING_THRESHOLD",
    "AccountProfile",
    "SyntheticStream",
    "pace",
]

SCENARIOS = (
    "account_takeover",
    "structuring",
    "card_testing",
    "mule",
    "dormant_reactivation",
    "fraud_ring",
    "merchant_cash_out",
)

# CNY; large-cash reporting limit the structuring scenario stays just under.
REPORTING_THRESHOLD = 50_000.0

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

# Where account-takeover sessions come from: far from every home city and
# never produced by normal traffic.
ATO_COUNTRIES: dict[str, tuple[float, float]] = {
    "RU": (55.76, 37.62),
    "NG": (6.52, 3.38),
    "BR": (-23.55, -46.63),
    "UA": (50.45, 30.52),
    "RO": (44.43, 26.10),
    "TR": (41.01, 28.98),
    "MX": (19.43, -99.13),
    "ZA": (-26.20, 28.05),
    "CO": (4.71, -74.07),
    "PK": (24.86, 67.01),
    "EG": (30.04, 31.24),
    "AR": (-34.60, -58.38),
}

# Typical layering destinations for mule fan-out.
MULE_DEST_COUNTRIES = ("AE", "KH", "MM", "LA", "PH", "MY", "VN", "CY", "TH")

# Online merchants' countries for card testing (card-not-present).
CARD_TEST_COUNTRIES: dict[str, tuple[float, float]] = {
    "US": (37.77, -122.42),
    "GB": (51.51, -0.13),
    "NL": (52.37, 4.90),
    "IE": (53.35, -6.26),
    "LT": (54.69, 25.28),
}

# Merchant category codes with rough popularity weights.
MCC_WEIGHTS = (
    ("5411", 18), ("5812", 14), ("5814", 12), ("5541", 6), ("5311", 5), ("5912", 5),
    ("4111", 7), ("4121", 5), ("5999", 6), ("5732", 3), ("5651", 4), ("7011", 2),
    ("4511", 1), ("5815", 4), ("5977", 3), ("4900", 3), ("5945", 1), ("5691", 1),
)
DIGITAL_MCCS = ("5815", "5816", "5817", "5818", "5999")

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
FOREIGN_IP_OCTETS = (5, 31, 37, 41, 45, 78, 91, 102, 105, 177, 179, 181, 185, 186, 190, 197, 200, 201)

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

# Expected number of transactions per incident, used to turn fraud_share into
# a per-arrival start probability (ranges are the uniform ranges below).
_EXPECTED_LEN = {
    "account_takeover": 6.0,
    "structuring": 5.5,
    "card_testing": 17.5,
    "mule": 6.0 + 2.0,
    "dormant_reactivation": 2.0,
    "fraud_ring": 4.0 * 2.0,
    "merchant_cash_out": 3.0 * 1.5,
}

# Longest possible span (seconds) from incident start to its last tx, from the
# timing ranges in _ScenarioState; bounds the warm-start look-back.
_MAX_SPAN = {
    "account_takeover": 60.0 + 7 * 40.0,
    "structuring": 600.0 + 6 * 3600.0,
    "card_testing": 30.0 + 24 * 20.0,
    "mule": 300.0 + 7 * 480.0 + 2400.0 + 2 * 480.0,
    "dormant_reactivation": 300.0 + 2 * 1800.0,
    "fraud_ring": 120.0 + 5 * (3 * 120.0 + 600.0),
    "merchant_cash_out": 600.0 + 4 * (2 * 900.0 + 1800.0),
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
        for ch, c in zip(CHANNELS, self.channel_cum):
            c = min(c, 1.0)
            out[ch] = c - prev
            prev = c
        return out


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    r = rng.random() * sum(w for _, w in weighted)
    for item, w in weighted:
        r -= w
        if r < 0:
            return item
    return weighted[-1][0]


def _ip(rng: random.Random, octets: tuple[int, ...]) -> str:
    return f"{rng.choice(octets)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


_MCC_CUM: list[float] = []
_MCC_TOTAL = 0.0
for _, _w in MCC_WEIGHTS:
    _MCC_TOTAL += _w
    _MCC_CUM.append(_MCC_TOTAL)


def _merchant_mcc(m: int) -> str:
    # Merchant -> MCC is a pure function of the merchant id, so a merchant has
    # one category everywhere in the stream without storing a 20k-entry table.
    h = (m * 2654435761) % 4294967296 / 4294967296.0
    return MCC_WEIGHTS[bisect_right(_MCC_CUM, h * _MCC_TOTAL)][0]


def _cum_with_inf(weights: list[float]) -> tuple[list[float], float]:
    """Cumulative weights whose last entry is +inf, so bisect never runs off the end."""
    cum = []
    s = 0.0
    for w in weights:
        s += w
        cum.append(s)
    if cum:
        cum[-1] = math.inf
    return cum, s


class SyntheticStream:
    """Infinite, seed-deterministic stream of transaction dicts in event-time order.

    The object itself is immutable after construction: every ``iter()`` (and
    every ``take``) replays the same stream from the beginning.
    """

    def __init__(
        self,
        seed: int = 7,
        accounts: int = 5000,
        rate: float = 200.0,
        start: datetime | None = None,
        fraud_share: float = 0.01,
    ) -> None:
        if accounts < 1:
            raise ValueError("accounts must be >= 1")
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("rate must be a positive finite number")
        if not (0.0 <= fraud_share < 1.0):
            raise ValueError("fraud_share must be in [0, 1)")
        self.seed = seed
        self.n_accounts = accounts
        self.rate = float(rate)
        self.fraud_share = float(fraud_share)
        if start is None:
            now = datetime.now(timezone.utc)
            start = now.replace(microsecond=0) + timedelta(seconds=1 if now.microsecond >= 500_000 else 0)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self.start = start.astimezone(timezone.utc)
        self._base_epoch = self.start.timestamp()

        self.profiles: list[AccountProfile] = self._draw_profiles(random.Random(f"riskcockpit-accounts-{seed}"))
        self._build_selection_tables()

    # ------------------------------------------------------------------ setup
    def _draw_profiles(self, rng: random.Random) -> list[AccountProfile]:
        n = self.n_accounts
        # Tiny populations get no dormant accounts so normal traffic always exists.
        n_dormant = round(n * DORMANT_SHARE) if n >= 10 else 0
        dormant = set(rng.sample(range(n), n_dormant))
        arche = tuple((name, w) for name, (w, _) in ARCHETYPES.items())
        base_channel = (0.45, 0.15, 0.10, 0.25, 0.05)
        profiles = []
        for i in range(n):
            country = _pick(rng, HOME_COUNTRY_WEIGHTS)
            city, clat, clon, tz = rng.choice(CITIES[country])
            currency = _pick(rng, HOME_CURRENCY[country])
            fx = FX_TO_CNY[currency]
            # Typical payment ~150 CNY with wide spread between people.
            mu = rng.gauss(math.log(150.0), 0.8) - math.log(fx)
            sigma = rng.uniform(0.45, 1.0)
            archetype = _pick(rng, arche)
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
                merchants.append((f"M{m:05d}", _merchant_mcc(m)))
            octets = IP_FIRST_OCTETS[country]
            devices = tuple((f"D{i * 2 + k:08d}", _ip(rng, octets)) for k in range(rng.randint(1, 2)))
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

    def _build_selection_tables(self) -> None:
        # Accounts are grouped by (archetype, local offset): the group's weight
        # at a UTC hour is sum(activity) * curve(local hour), then an account is
        # drawn inside the group by activity. Two bisects per transaction and
        # memory independent of 24 x accounts.
        groups: dict[tuple[str, int], list[AccountProfile]] = {}
        for p in self.profiles:
            if not p.dormant:
                groups.setdefault((p.archetype, p.utc_offset), []).append(p)
        self._groups = []
        group_meta = []
        for (arch, off), members in sorted(groups.items()):
            cum, total = _cum_with_inf([p.activity for p in members])
            self._groups.append((members, cum, total))
            group_meta.append((ARCHETYPES[arch][1], off, total))
        self._hour_tables = []
        for h in range(24):
            self._hour_tables.append(
                _cum_with_inf([total * curve[(h + off) % 24] for curve, off, total in group_meta])
            )

        self._active = [p for p in self.profiles if not p.dormant]
        self._active_cum = _cum_with_inf([p.activity for p in self._active])
        self._cny_active = [p for p in self._active if p.currency == "CNY"]
        self._dormant = [p for p in self.profiles if p.dormant]
        kinds = [
            k
            for k in SCENARIOS
            if not (k == "dormant_reactivation" and not self._dormant)
            and not (k == "structuring" and not self._cny_active)
        ]
        self._kinds = tuple(kinds)
        f = self.fraud_share
        mean_len = sum(_EXPECTED_LEN[k] for k in kinds) / len(kinds)
        # Scenario tx per normal tx must be f / (1 - f) for a share f overall.
        self._p_start = (f / (1.0 - f)) / mean_len if f > 0 else 0.0

    # ------------------------------------------------------------- public API
    def take(self, n: int) -> list[dict]:
        return list(islice(iter(self), n))

    def profile(self, account_id: str) -> AccountProfile:
        return self.profiles[int(account_id[1:])]

    def __iter__(self) -> Iterator[dict]:
        return self._generate()

    # ------------------------------------------------------------ generation
    def _generate(self) -> Iterator[dict]:
        rng = random.Random(f"riskcockpit-stream-{self.seed}")
        rnd = rng.random
        expo = rng.expovariate
        lognorm = rng.lognormvariate
        rate = self.rate
        base = self._base_epoch
        # The start in the id: a stream started later (a second `make run`) has ids of its own,
        # which the worker and the store would otherwise take for redeliveries of the first.
        seed = f"{self.seed}-{int(base)}"
        groups = self._groups
        hour_tables = self._hour_tables
        p_start = self._p_start
        heap: list[tuple[float, int, dict]] = []
        heappush, heappop = heapq.heappush, heapq.heappop
        utc = timezone.utc
        fromts = datetime.fromtimestamp
        state = _ScenarioState(self, rng)
        seq = 0

        if p_start:
            # Warm start: the stream is a window onto an ongoing process, so
            # incidents that began before `start` are still in flight. Without
            # this, slow scenarios (structuring spans hours) would be missing
            # and the fraud share far below target for the first hours.
            kinds = self._kinds
            lam = rate * p_start / len(kinds)
            state.keep_from = 0.0
            for kind in kinds:
                t0 = -_MAX_SPAN[kind]
                while True:
                    t0 += expo(lam)
                    if t0 >= 0.0:
                        break
                    numbers = dict(state.incident_no)
                    txs = state.start_kind(t0, kind)
                    if not txs:
                        # Nothing left to emit: keep incident numbers dense.
                        state.incident_no = numbers
                    for t_s, payload in txs:
                        seq += 1
                        heappush(heap, (t_s, seq, payload))
            state.keep_from = -math.inf

        last_sec = None
        prefix = ""
        t_normal = 0.0
        i = 0
        while True:
            tn = t_normal + expo(rate)
            while heap and heap[0][0] <= tn:
                ts_, _, payload = heappop(heap)
                tabs = base + ts_
                sec = tabs // 1.0
                if sec != last_sec:
                    last_sec = sec
                    prefix = fromts(sec, utc).strftime("%Y-%m-%dT%H:%M:%S")
                tx = {
                    "tx_id": f"T{seed}-{i:010d}",
                    "ts": f"{prefix}.{int((tabs - sec) * 1000.0):03d}+00:00",
                }
                tx.update(payload)
                i += 1
                yield tx
            t_normal = tn
            tabs = base + tn
            sec = tabs // 1.0
            if sec != last_sec:
                last_sec = sec
                prefix = fromts(sec, utc).strftime("%Y-%m-%dT%H:%M:%S")
            ts = f"{prefix}.{int((tabs - sec) * 1000.0):03d}+00:00"

            hcum, htot = hour_tables[int(sec // 3600.0) % 24]
            members, mcum, mtot = groups[bisect_right(hcum, rnd() * htot)]
            p = members[bisect_right(mcum, rnd() * mtot)]

            r = rnd()
            cc = p.channel_cum
            c = 0
            while r >= cc[c]:
                c += 1
            mu = p.mu
            sigma = p.sigma
            country = p.home_country
            status = "approved"
            if c == 0:  # card
                if rnd() < 0.8:
                    mid, mcc = p.merchants[int(rnd() * len(p.merchants))]
                else:
                    m = int(rnd() * N_MERCHANTS)
                    mid, mcc = f"M{m:05d}", _merchant_mcc(m)
                amount = lognorm(mu, sigma)
                direction = "credit" if rnd() < 0.01 else "debit"  # refunds
                if rnd() < 0.015:
                    status = "declined"
                if rnd() < 0.012:
                    tc = p.travel_countries
                    country = tc[int(rnd() * len(tc))]
                tx = {
                    "tx_id": f"T{seed}-{i:010d}",
                    "ts": ts,
                    "account_id": p.account_id,
                    "amount": round(amount, 2) or 0.01,
                    "currency": p.currency,
                    "direction": direction,
                    "channel": "card",
                    "merchant_id": mid,
                    "mcc": mcc,
                    "country": country,
                }
                if rnd() < 0.35:  # online: customer's own device
                    dv = p.devices
                    dev, ip = dv[int(rnd() * len(dv))]
                    tx["device_id"] = dev
                    tx["ip"] = ip
            elif c == 1 or c == 3:  # transfer / mobile
                cps = p.counterparties
                if rnd() < 0.9:
                    cp = cps[int(rnd() * len(cps))]
                else:  # legitimately new payee now and then
                    cp = f"C{int(rnd() * N_EXTERNAL_COUNTERPARTIES):06d}"
                if c == 1:
                    amount = lognorm(mu + 1.2, sigma)
                    credit = rnd() < 0.3
                else:
                    amount = lognorm(mu + 0.2, sigma)
                    credit = rnd() < 0.2
                if rnd() < 0.003:
                    status = "declined"
                tx = {
                    "tx_id": f"T{seed}-{i:010d}",
                    "ts": ts,
                    "account_id": p.account_id,
                    "amount": round(amount, 2) or 0.01,
                    "currency": p.currency,
                    "direction": "credit" if credit else "debit",
                    "channel": CHANNELS[c],
                    "counterparty_id": cp,
                    "country": country,
                }
                if not credit:
                    dv = p.devices
                    dev, ip = dv[int(rnd() * len(dv))]
                    tx["device_id"] = dev
                    tx["ip"] = ip
            elif c == 2:  # atm: banknote multiples
                cur = p.currency
                unit = 100.0 if (cur == "CNY" or cur == "HKD") else 20.0
                amount = max(unit, round(lognorm(mu + 0.8, sigma) / unit) * unit)
                if rnd() < 0.004:
                    status = "declined"
                tx = {
                    "tx_id": f"T{seed}-{i:010d}",
                    "ts": ts,
                    "account_id": p.account_id,
                    "amount": amount,
                    "currency": cur,
                    "direction": "credit" if rnd() < 0.1 else "debit",
                    "channel": "atm",
                    "country": country,
                }
            else:  # branch
                tx = {
                    "tx_id": f"T{seed}-{i:010d}",
                    "ts": ts,
                    "account_id": p.account_id,
                    "amount": round(lognorm(mu + 1.8, sigma), 2) or 0.01,
                    "currency": p.currency,
                    "direction": "credit" if rnd() < 0.5 else "debit",
                    "channel": "branch",
                    "country": country,
                }
            tx["lat"] = round(p.lat + (rnd() - 0.5) * 0.06, 4)
            tx["lon"] = round(p.lon + (rnd() - 0.5) * 0.06, 4)
            tx["status"] = status
            tx["attributes"] = {}
            i += 1
            yield tx

            if p_start and rnd() < p_start:
                for t_s, payload in state.start(tn):
                    seq += 1
                    heappush(heap, (t_s, seq, payload))


class _ScenarioState:
    """Per-iteration mutable state of the scenario injector (counters, used ids)."""

    def __init__(self, stream: SyntheticStream, rng: random.Random) -> None:
        self.s = stream
        self.rng = rng
        self.kinds = stream._kinds
        self.incident_no = {k: 0 for k in SCENARIOS}
        self.next_cp = N_EXTERNAL_COUNTERPARTIES
        self.next_dev = 0
        # Countries each account has been seen in through scenarios, so an
        # account that is taken over twice still gets a never-seen country.
        self.scenario_countries: dict[int, set[str]] = {}
        dormant = list(stream._dormant)
        rng.shuffle(dormant)
        self.dormant_queue = dormant
        self.dormant_pos = 0
        # Transactions due before this are not built (warm start discards them).
        self.keep_from = -math.inf
        # Fraud rings and colluding merchants recur across incidents: that is what the
        # device's, the beneficiary's and the merchant's own state can learn.
        self.rings = [([(self.fresh_device(), _ip(rng, IP_FIRST_OCTETS["CN"])) for _ in range(2)],
                       [self.fresh_cp() for _ in range(2)]) for _ in range(6)]
        self.colluding = [(f"M{m:05d}", _merchant_mcc(m)) for m in rng.sample(range(N_MERCHANTS), 6)]

    # ---- helpers
    def fresh_cp(self) -> str:
        self.next_cp += 1
        return f"C{self.next_cp:06d}"

    def fresh_device(self) -> str:
        self.next_dev += 1
        return f"DN{self.next_dev:07d}"

    def busy_account(self) -> AccountProfile:
        # Victims are drawn by activity: fraud on accounts with a history is
        # what makes the deviation from habits observable.
        cum, total = self.s._active_cum
        return self.s._active[bisect_right(cum, self.rng.random() * total)]

    def labels(self, kind: str) -> dict:
        self.incident_no[kind] += 1
        return {"scenario": kind, "incident": f"{kind}-{self.incident_no[kind]}"}

    @staticmethod
    def jitter(rng: random.Random, lat: float, lon: float, d: float = 0.03) -> tuple[float, float]:
        return round(lat + rng.uniform(-d, d), 4), round(lon + rng.uniform(-d, d), 4)

    # ---- dispatcher
    def start(self, t0: float) -> list[tuple[float, dict]]:
        kind = self.kinds[int(self.rng.random() * len(self.kinds))]
        return getattr(self, kind)(t0, kind)

    def start_kind(self, t0: float, kind: str) -> list[tuple[float, dict]]:
        return getattr(self, kind)(t0, kind)

    # ---- scenarios; every tx time is strictly > t0
    def account_takeover(self, t0: float, kind: str) -> list[tuple[float, dict]]:
        rng = self.rng
        p = self.busy_account()
        used = self.scenario_countries.setdefault(p.index, set())
        options = [c for c in ATO_COUNTRIES if c not in used]
        if not options:  # this account exhausted the pool; hit someone else
            return self.card_testing(t0, "card_testing")
        country = rng.choice(options)
        used.add(country)
        clat, clon = ATO_COUNTRIES[country]
        device = self.fresh_device()
        ip = _ip(rng, FOREIGN_IP_OCTETS)
        beneficiaries = [self.fresh_cp() for _ in range(rng.randint(1, 3))]
        labels = self.labels(kind)
        typical = p.typical_amount
        out = []
        t = t0 + rng.uniform(5.0, 60.0)
        keep = self.keep_from
        for _ in range(rng.randint(4, 8)):
            if t < keep:
                t += rng.uniform(5.0, 40.0)
                continue
            lat, lon = self.jitter(rng, clat, clon)
            out.append((t, {
                "account_id": p.account_id,
                "amount": round(typical * rng.uniform(5.0, 20.0), 2),
                "currency": p.currency,
                "direction": "debit",
                "channel": rng.choice(("mobile", "transfer")),
                "counterparty_id": rng.choice(beneficiaries),
                "country": country,
                "device_id": device,
                "ip": ip,
                "lat": lat,
                "lon": lon,
                "status": "approved" if rng.random() < 0.9 else "declined",
                "attributes": dict(labels),
            }))
            t += rng.uniform(5.0, 40.0)
        return out

    def structuring(self, t0: float, kind: str) -> list[tuple[float, dict]]:
        rng = self.rng
        cny = self.s._cny_active
        p = cny[int(rng.random() * len(cny))]
        labels = self.labels(kind)
        cash = rng.random() < 0.5  # cash deposits vs. transfers out
        payees = [self.fresh_cp() for _ in range(rng.randint(1, 3))]
        out = []
        t = t0 + rng.uniform(30.0, 600.0)
        keep = self.keep_from
        for _ in range(rng.randint(4, 7)):
            if t < keep:
                t += rng.uniform(600.0, 3600.0)
                continue
            lat, lon = self.jitter(rng, p.lat, p.lon)
            amount = round(REPORTING_THRESHOLD * rng.uniform(0.90, 0.99), 2)
            if cash:
                tx = {
                    "account_id": p.account_id,
                    "amount": amount,
                    "currency": "CNY",
                    "direction": "credit",
                    "channel": "branch" if rng.random() < 0.7 else "atm",
                    "country": p.home_country,
                }
            else:
                dev, ip = rng.choice(p.devices)
                tx = {
                    "account_id": p.account_id,
                    "amount": amount,
                    "currency": "CNY",
                    "direction": "debit",
                    "channel": "transfer",
                    "counterparty_id": rng.choice(payees),
                    "country": p.home_country,
                    "device_id": dev,
                    "ip": ip,
                }
            tx["lat"], tx["lon"] = lat, lon
            tx["status"] = "approved"
            tx["attributes"] = dict(labels)
            out.append((t, tx))
            t += rng.uniform(600.0, 3600.0)
        return out

    def card_testing(self, t0: float, kind: str) -> list[tuple[float, dict]]:
        rng = self.rng
        p = self.busy_account()
        labels = self.labels(kind)
        n = rng.randint(10, 25)
        n_declined = round(n * rng.uniform(0.40, 0.70))
        declined = set(rng.sample(range(n), n_declined))
        merchants = rng.sample(range(N_MERCHANTS), n)
        country = rng.choice(tuple(CARD_TEST_COUNTRIES))
        self.scenario_countries.setdefault(p.index, set()).add(country)
        clat, clon = CARD_TEST_COUNTRIES[country]
        device = self.fresh_device()
        ip = _ip(rng, FOREIGN_IP_OCTETS)
        out = []
        t = t0 + rng.uniform(1.0, 30.0)
        keep = self.keep_from
        for k in range(n):
            if t < keep:
                t += rng.uniform(2.0, 20.0)
                continue
            lat, lon = self.jitter(rng, clat, clon)
            out.append((t, {
                "account_id": p.account_id,
                "amount": round(rng.uniform(0.5, 5.0), 2),
                "currency": p.currency,
                "direction": "debit",
                "channel": "card",
                "merchant_id": f"M{merchants[k]:05d}",
                "mcc": rng.choice(DIGITAL_MCCS),
                "country": country,
                "device_id": device,
                "ip": ip,
                "lat": lat,
                "lon": lon,
                "status": "declined" if k in declined else "approved",
                "attributes": dict(labels),
            }))
            t += rng.uniform(2.0, 20.0)
        return out

    def mule(self, t0: float, kind: str) -> list[tuple[float, dict]]:
        rng = self.rng
        p = self.busy_account()
        labels = self.labels(kind)
        fx = FX_TO_CNY[p.currency]
        out = []
        t = t0 + rng.uniform(10.0, 300.0)
        total_in = 0.0
        keep = self.keep_from
        for _ in range(rng.randint(4, 8)):
            amount = round(rng.lognormvariate(math.log(12_000.0), 0.5) / fx, 2)
            total_in += amount
            last_in = t
            if t < keep:
                t += rng.uniform(60.0, 480.0)
                continue
            out.append((t, {
                "account_id": p.account_id,
                "amount": amount,
                "currency": p.currency,
                "direction": "credit",
                "channel": "transfer",
                "counterparty_id": self.fresh_cp(),
                "country": p.home_country,
                "lat": p.lat,
                "lon": p.lon,
                "status": "approved",
                "attributes": dict(labels),
            }))
            t += rng.uniform(60.0, 480.0)
        # Fan-out starts within 40 min of the last credit and its gaps are
        # bounded so that everything leaves within the hour.
        t = last_in + rng.uniform(300.0, 2400.0)
        cross_border = rng.random() < 0.7
        dest = rng.choice(MULE_DEST_COUNTRIES) if cross_border else p.home_country
        if cross_border:
            self.scenario_countries.setdefault(p.index, set()).add(dest)
        k = rng.randint(1, 3)
        total_out = round(total_in * rng.uniform(0.90, 0.98), 2)
        shares = [rng.uniform(0.5, 1.5) for _ in range(k)]
        ssum = sum(shares)
        amounts = [round(total_out * s / ssum, 2) for s in shares[:-1]]
        amounts.append(round(total_out - sum(amounts), 2))
        dev, ip = rng.choice(p.devices)
        for amount in amounts:
            if t < keep:
                t += rng.uniform(60.0, 480.0)
                continue
            lat, lon = self.jitter(rng, p.lat, p.lon)
            out.append((t, {
                "account_id": p.account_id,
                "amount": amount,
                "currency": p.currency,
                "direction": "debit",
                "channel": "transfer",
                "counterparty_id": self.fresh_cp(),
                "country": dest,
                "device_id": dev,
                "ip": ip,
                "lat": lat,
                "lon": lon,
                "status": "approved",
                "attributes": dict(labels),
            }))
            t += rng.uniform(60.0, 480.0)
        return out

    def dormant_reactivation(self, t0: float, kind: str) -> list[tuple[float, dict]]:
        rng = self.rng
        # Walk a shuffled queue so each dormant account wakes up once before
        # any is reused.
        q = self.dormant_queue
        p = q[self.dormant_pos % len(q)]
        self.dormant_pos += 1
        labels = self.labels(kind)
        device = self.fresh_device()
        ip = _ip(rng, IP_FIRST_OCTETS[p.home_country])
        out = []
        t = t0 + rng.uniform(10.0, 300.0)
        keep = self.keep_from
        for _ in range(rng.randint(1, 3)):
            if t < keep:
                t += rng.uniform(120.0, 1800.0)
                continue
            lat, lon = self.jitter(rng, p.lat, p.lon, 0.2)
            out.append((t, {
                "account_id": p.account_id,
                "amount": round(p.typical_amount * rng.uniform(10.0, 40.0), 2),
                "currency": p.currency,
                "direction": "debit",
                "channel": rng.choice(("mobile", "transfer")),
                "counterparty_id": self.fresh_cp(),
                "country": p.home_country,
                "device_id": device,
                "ip": ip,
                "lat": lat,
                "lon": lon,
                "status": "approved",
                "attributes": dict(labels),
            }))
            t += rng.uniform(120.0, 1800.0)
        return out

    def fraud_ring(self, t0: float, kind: str) -> list[tuple[float, dict]]:
        rng = self.rng
        devices, beneficiaries = self.rings[int(rng.random() * len(self.rings))]
        labels = self.labels(kind)
        out = []
        t = t0 + rng.uniform(10.0, 120.0)
        keep = self.keep_from
        for _ in range(rng.randint(3, 5)):
            p = self.busy_account()
            device, ip = rng.choice(devices)
            floor = rng.uniform(1_000.0, 8_000.0) / FX_TO_CNY[p.currency]
            for _ in range(rng.randint(1, 3)):
                if t >= keep:
                    lat, lon = self.jitter(rng, p.lat, p.lon, 0.2)
                    out.append((t, {
                        "account_id": p.account_id,
                        "amount": round(max(p.typical_amount * rng.uniform(3.0, 10.0), floor), 2),
                        "currency": p.currency,
                        "direction": "debit",
                        "channel": "mobile",
                        "counterparty_id": rng.choice(beneficiaries),
                        "country": p.home_country,
                        "device_id": device,
                        "ip": ip,
                        "lat": lat,
                        "lon": lon,
                        "status": "approved",
                        "attributes": dict(labels),
                    }))
                t += rng.uniform(20.0, 120.0)
            t += rng.uniform(60.0, 600.0)
        return out

    def merchant_cash_out(self, t0: float, kind: str) -> list[tuple[float, dict]]:
        rng = self.rng
        merchant, mcc = self.colluding[int(rng.random() * len(self.colluding))]
        labels = self.labels(kind)
        out = []
        t = t0 + rng.uniform(60.0, 600.0)
        keep = self.keep_from
        for _ in range(rng.randint(2, 4)):
            p = self.busy_account()
            floor = rng.uniform(2_000.0, 9_000.0) / FX_TO_CNY[p.currency]
            for _ in range(rng.randint(1, 2)):
                if t >= keep:
                    lat, lon = self.jitter(rng, p.lat, p.lon)
                    out.append((t, {
                        "account_id": p.account_id,
                        "amount": round(max(p.typical_amount * rng.uniform(4.0, 12.0), floor), 2),
                        "currency": p.currency,
                        "direction": "debit",
                        "channel": "card",
                        "merchant_id": merchant,
                        "mcc": mcc,
                        "country": p.home_country,
                        "lat": lat,
                        "lon": lon,
                        "status": "approved",
                        "attributes": dict(labels),
                    }))
                t += rng.uniform(30.0, 900.0)
            t += rng.uniform(300.0, 1800.0)
        return out


def pace(stream: Iterable[dict], rate: float, duration: float | None = None) -> Iterator[dict]:

    """Yield items of ``stream`` at ``rate`` per wall-clock second, for ``duration`` seconds if given.

    Items are released against an absolute schedule (item k is due at
    first + k / rate), so sleep jitter never accumulates into rate drift; the
    generator only sleeps when it is more than a millisecond ahead, which
    batches items naturally at high rates. If the consumer stalls for more
    than a second the schedule is re-anchored instead of bursting to catch up.
    Both the schedule and ``duration`` start at the first item, so a slow
    stream start-up (the warm-start simulation) neither eats into the duration
    nor turns into a catch-up burst. When the duration ends, at most the one
    item already pulled from ``stream`` is dropped.
    """
    if not rate > 0:
        raise ValueError("rate must be > 0")
    clock = time.monotonic
    sleep = time.sleep
    interval = 0.0 if math.isinf(rate) else 1.0 / rate
    it = iter(stream)
    anchor = deadline = None
    k = 0
    while True:
        if deadline is not None and clock() >= deadline:
            return
        try:
            item = next(it)
        except StopIteration:
            return
        now = clock()
        if anchor is None:
            anchor = now
            if duration is not None:
                deadline = now + duration
        due = anchor + k * interval
        if deadline is not None and due >= deadline:
            # Due after the end: wait the duration out rather than overshoot.
            sleep(max(0.0, deadline - now))
            return
        if due - now > 0.001:
            sleep(due - now)
        elif now - due > 1.0:
            anchor, k = now, 0
        k += 1
        yield item
