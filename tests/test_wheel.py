"""The built wheel is one import package, ``riskcockpit``, with its configuration, migrations and
cockpit assets, and works from any folder once installed into a fresh environment."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import requests
from conftest import crashed_agent, wait_for

from riskcockpit.broker import free_port, port_open

pytestmark = pytest.mark.integration  # a real broker, store or processes

REPO = Path(__file__).resolve().parents[1]
FORMER_TOP_LEVEL = ("streams", "store", "dashboard", "alerting", "indicators")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, built from the checkout, installed into a new venv whose only riskcockpit is the
    wheel's. The dependencies come from this environment's site-packages as a plain path entry,
    so this environment's editable install (a finder started from a .pth file) is not active."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: an in-tree build leaves build/ behind, whose stale files a later wheel
    # would carry.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".data", "build", "dist", "*.egg-info", "lib", "__pycache__", ".pytest_cache", "results"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(root.glob("riskcockpit-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = [entry for entry in sys.path if entry.endswith("site-packages")] or [sysconfig.get_paths()["purelib"]]
    (site / "dependencies.pth").write_text("\n".join(ours) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RISKCOCKPIT_", "PYTHON"))}
    return wheel, venv / "bin", elsewhere, env


def test_the_wheel_is_one_package_with_its_data(installed):
    wheel, _, _, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(info).decode().split() == ["riskcockpit"]
    assert {name.split("/")[0] for name in names} == {"riskcockpit", info.split("/")[0]}
    for shipped in ("riskcockpit/config/riskcockpit.yaml", "riskcockpit/config/indicators.yaml",
                    "riskcockpit/config/alerting.yaml", "riskcockpit/store/migrations/0001_initial.sql",
                    "riskcockpit/dashboard/assets/bootstrap.min.css", "riskcockpit/dashboard/assets/cockpit.css",
                    "riskcockpit/kafka_release/pom.xml", "riskcockpit/streams/worker.py"):
        assert shipped in names, shipped



def test_the_layers_hold_on_the_installed_package(installed):
    """pyproject.toml's import-linter contract: each floor imports only those below it. Checked on
    the installed wheel, where the package is one folder tree the import graph can walk."""
    _, bin_dir, elsewhere, env = installed
    lint = subprocess.run([str(bin_dir / "python"), "-c", "import sys; from importlinter.cli import "
                           "lint_imports_command; sys.exit(lint_imports_command.main(sys.argv[1:]))",
                           str(REPO / "pyproject.toml")], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout[-4000:] + lint.stderr[-2000:]
    assert "1 kept, 0 broken" in lint.stdout

def test_the_installed_cli_lists_the_library_from_another_folder(installed):
    _, bin_dir, elsewhere, env = installed
    listed = subprocess.run([str(bin_dir / "riskcockpit"), "indicators", "list"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-3000:]
    header, *rows = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert header == "indicator" and len(rows) >= 36, listed.stdout
    assert {"count_velocity", "structuring", "impossible_travel", "merchant_compromise"} <= set(rows)
    probe = subprocess.run([str(bin_dir / "python"), "-c", "import importlib.util, riskcockpit.cli; print("
                            f"[n for n in {FORMER_TOP_LEVEL!r} if importlib.util.find_spec(n)])"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.strip() == "[]"


def test_the_installed_stack_runs_from_another_folder(installed, tmp_path):
    """``riskcockpit run`` from the wheel: its broker's jars are fetched into the user's cache
    (here a temporary one), not into site-packages; transactions are scored and stored."""
    _, bin_dir, elsewhere, env = installed
    cockpit_port, kafka_port = free_port(), free_port()
    env = env | {"XDG_CACHE_HOME": str(tmp_path / "cache"), "RISKCOCKPIT_KAFKA__PORT": str(kafka_port),
                 "RISKCOCKPIT_KAFKA__CONTROLLER_PORT": str(free_port()),
                 "RISKCOCKPIT_COCKPIT__PORT": str(cockpit_port)}
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        stack = subprocess.Popen([str(bin_dir / "riskcockpit"), "run"], cwd=elsewhere, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def scoring():
            output = log_path.read_text(errors="replace")
            assert stack.poll() is None, output[-3000:]
            assert not (crash := crashed_agent(output)), crash
            try:
                return requests.get(f"http://127.0.0.1:{cockpit_port}/api/kpis", timeout=5).json()["tx_per_s"] > 0
            except requests.RequestException:
                return False

        wait_for(scoring, timeout=240, interval=1, what="the installed stack to score and store transactions")
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        code = stack.wait(90)
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert (elsewhere / ".data").is_dir()  # the data folder is the working folder's, as documented
    assert list((tmp_path / "cache" / "riskcockpit").glob("kafka-*/kafka-clients-*.jar")), "jars not in the user's cache"
    assert not list(next((bin_dir.parent / "lib").glob("python3*/site-packages")).glob("riskcockpit/**/*.jar"))
    deadline = time.monotonic() + 10
    while port_open("127.0.0.1", kafka_port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not port_open("127.0.0.1", cockpit_port) and not port_open("127.0.0.1", kafka_port)
