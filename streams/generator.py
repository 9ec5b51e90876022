"""Deterministic synthetic bank-transaction stream with injected fraud scenarios.

Its population (:mod:`riskcockpit.streams.population`) gives every account habits and draws
normal traffic from them; its scenarios (:mod:`riskcockpit.streams.scenarios`) inject the
frauds. This module merges the two into one stream in event-time order.

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
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

from riskcockpit.streams.population import (
    CHANNELS,
    N_EXTERNAL_COUNTERPARTIES,
    N_MERCHANTS,
    AccountProfile,
    cumulative,
    draw_profiles,
    merchant_mcc,
    selection_tables,
)
from riskcockpit.streams.scenarios import (
    MAX_SPAN,
    ScenarioState,
    available_kinds,
    start_probability,
)

__all__ = ["SyntheticStream", "pace"]


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
            now = datetime.now(UTC)
            start = now.replace(microsecond=0) + timedelta(seconds=1 if now.microsecond >= 500_000 else 0)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.start = start.astimezone(UTC)
        self._base_epoch = self.start.timestamp()

        self.profiles: list[AccountProfile] = draw_profiles(random.Random(f"riskcockpit-accounts-{seed}"), accounts)
        self._build_selection_tables()

    # ------------------------------------------------------------------ setup
    def _build_selection_tables(self) -> None:
        self._groups, self._hour_tables = selection_tables(self.profiles)
        self._active = [p for p in self.profiles if not p.dormant]
        self._active_cum = cumulative([p.activity for p in self._active])
        self._cny_active = [p for p in self._active if p.currency == "CNY"]
        self._dormant = [p for p in self.profiles if p.dormant]
        self._kinds = available_kinds(bool(self._dormant), bool(self._cny_active))
        self._p_start = start_probability(self._kinds, self.fraud_share)

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
        utc = UTC
        fromts = datetime.fromtimestamp
        state = ScenarioState(self, rng)
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
                t0 = -MAX_SPAN[kind]
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
                    mid, mcc = f"M{m:05d}", merchant_mcc(m)
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
