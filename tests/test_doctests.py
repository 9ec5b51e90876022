"""Every docstring example of the package runs, collected by the modules' canonical names
(``riskcockpit.indicators.velocity``), so each module is imported once, as users import it."""

import doctest
import importlib
import pkgutil
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# ``__main__`` runs the CLI when imported; the data folders hold no code.
NOT_IMPORTED = {"riskcockpit.__main__", "riskcockpit.config", "riskcockpit.kafka_release"}


def modules() -> list[str]:
    """Every module of every package pyproject.toml ships (a checkout maps folders into the
    package, so walking ``riskcockpit.__path__`` alone would miss them)."""
    names = set()
    for package in tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]:
        names.add(package)
        found = importlib.import_module(package)
        names.update(info.name for info in pkgutil.iter_modules(found.__path__, f"{package}."))
    return sorted(names - NOT_IMPORTED)


def test_the_package_holds_every_component():
    found = set(modules())
    for component in ("streams.worker", "indicators.velocity", "store.client", "alerting.notifier",
                      "dashboard.app", "cli"):
        assert f"riskcockpit.{component}" in found


# Imported while collecting, not inside a test: importing Faust's stack runs a process (a platform
# probe), which the unit tests' guard would refuse.
MODULES = [importlib.import_module(name).__name__ for name in modules()]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
