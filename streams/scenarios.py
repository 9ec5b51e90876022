"""The fraud scenarios the synthetic stream injects, and the state of their injector.

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
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from typing import TYPE_CHECKING

from riskcockpit.streams.population import (
    FX_TO_CNY,
    IP_FIRST_OCTETS,
    N_EXTERNAL_COUNTERPARTIES,
    N_MERCHANTS,
    AccountProfile,
    merchant_mcc,
    random_ip,
)

if TYPE_CHECKING:
    from riskcockpit.streams.generator import SyntheticStream

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

DIGITAL_MCCS = ("5815", "5816", "5817", "5818", "5999")

FOREIGN_IP_OCTETS = (5, 31, 37, 41, 45, 78, 91, 102, 105, 177, 179, 181, 185, 186, 190, 197, 200, 201)

# Expected number of transactions per incident, used to turn fraud_share into
# a per-arrival start probability (ranges are the uniform ranges below).
EXPECTED_LEN = {
    "account_takeover": 6.0,
    "structuring": 5.5,
    "card_testing": 17.5,
    "mule": 6.0 + 2.0,
    "dormant_reactivation": 2.0,
    "fraud_ring": 4.0 * 2.0,
    "merchant_cash_out": 3.0 * 1.5,
}

# Longest possible span (seconds) from incident start to its last tx, from the
# timing ranges in ScenarioState; bounds the warm-start look-back.
MAX_SPAN = {
    "account_takeover": 60.0 + 7 * 40.0,
    "structuring": 600.0 + 6 * 3600.0,
    "card_testing": 30.0 + 24 * 20.0,
    "mule": 300.0 + 7 * 480.0 + 2400.0 + 2 * 480.0,
    "dormant_reactivation": 300.0 + 2 * 1800.0,
    "fraud_ring": 120.0 + 5 * (3 * 120.0 + 600.0),
    "merchant_cash_out": 600.0 + 4 * (2 * 900.0 + 1800.0),
}



def available_kinds(has_dormant: bool, has_cny: bool) -> tuple[str, ...]:
    """The scenarios a population can host: reactivation needs dormant accounts, structuring CNY ones."""
    return tuple(k for k in SCENARIOS
                 if not (k == "dormant_reactivation" and not has_dormant) and not (k == "structuring" and not has_cny))


def start_probability(kinds: tuple[str, ...], fraud_share: float) -> float:
    """The chance that a normal arrival starts an incident, for ``fraud_share`` of all transactions."""
    if not fraud_share > 0:
        return 0.0
    mean_len = sum(EXPECTED_LEN[k] for k in kinds) / len(kinds)
    # Scenario tx per normal tx must be f / (1 - f) for a share f overall.
    return (fraud_share / (1.0 - fraud_share)) / mean_len


class ScenarioState:
    """Per-iteration mutable state of the scenario injector (counters, used ids)."""

    def __init__(self, stream: SyntheticStream, rng: random.Random) -> None:
        self.s = stream
        self.rng = rng
        self.kinds = stream._kinds
        self.incident_no = dict.fromkeys(SCENARIOS, 0)
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
        self.rings = [([(self.fresh_device(), random_ip(rng, IP_FIRST_OCTETS["CN"])) for _ in range(2)],
                       [self.fresh_cp() for _ in range(2)]) for _ in range(6)]
        self.colluding = [(f"M{m:05d}", merchant_mcc(m)) for m in rng.sample(range(N_MERCHANTS), 6)]

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
        ip = random_ip(rng, FOREIGN_IP_OCTETS)
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
        ip = random_ip(rng, FOREIGN_IP_OCTETS)
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
        ip = random_ip(rng, IP_FIRST_OCTETS[p.home_country])
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
