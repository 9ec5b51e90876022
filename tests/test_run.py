"""``riskcockpit run`` (what ``make run`` starts): live alerts of all three tiers within 60 s,
and Ctrl-C stops every process it started, the embedded broker included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from conftest import wait_for
from riskcockpit.broker import free_port, port_open


def test_run_shows_all_tiers_within_a_minute_and_stops_cleanly(tmp_path):
    kafka_port, cockpit_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKCOCKPIT_")} | {
        "RISKCOCKPIT_DATA_DIR": str(tmp_path / "data"),
        "RISKCOCKPIT_KAFKA__PORT": str(kafka_port),
        "RISKCOCKPIT_KAFKA__CONTROLLER_PORT": str(free_port()),
        "RISKCOCKPIT_COCKPIT__PORT": str(cockpit_port),
    }
    log = open(tmp_path / "run.log", "wb")
    started = time.monotonic()
    stack = subprocess.Popen([sys.executable, "-m", "riskcockpit", "run"], env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{cockpit_port}"

    def kpis():
        assert stack.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        try:
            return requests.get(f"{url}/api/kpis", timeout=5).json()
        except requests.RequestException:
            return None

    try:
        wait_for(kpis, timeout=120, what="the cockpit to answer")
        cockpit_up = time.monotonic() - started
        tiers = wait_for(lambda: (k := kpis()) and all(k["alerts_5m"][t] > 0 for t in ("1", "2", "3")) and k,
                         timeout=60, interval=1, what="alerts of all three tiers within 60 s of the cockpit")
        print(f"cockpit up after {cockpit_up:.1f}s; all tiers after {time.monotonic() - started:.1f}s; {tiers}")
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        code = stack.wait(90)
    output = (tmp_path / "run.log").read_text()
    assert code == 0, output[-3000:]
    assert "stopped" in output
    assert not port_open("127.0.0.1", cockpit_port) and not port_open("127.0.0.1", kafka_port)
