# Two commands on a fresh machine:
#   make run    bootstrap, then the whole stack with synthetic traffic; cockpit on :8050
#   make test   bootstrap, then the whole test suite against real Kafka and ClickHouse (chdb)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
JARS := broker/lib/.fetched

.PHONY: run test lint bootstrap bench clean

bootstrap: $(STAMP) $(JARS)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

$(JARS): broker/pom.xml
	mvn -B -q -f broker/pom.xml dependency:copy-dependencies
	touch $@

run: bootstrap
	$(BIN)/riskcockpit run

# pytest, not `python -m pytest`: that would put the checkout's root on sys.path, where its
# folders import under their own names besides riskcockpit.*
test: bootstrap lint
	$(BIN)/pytest

# ruff, and the layers of pyproject.toml's import contract (checked on the installed wheel)
lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/pytest -q tests/test_wheel.py -k layers

bench: bootstrap
	$(BIN)/python bench/scoring_core.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) broker/lib .data
