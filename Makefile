# Both targets install what they need into .venv; a fresh clone needs only Python 3.10+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-setup install lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,spark]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python examples/credit_scoring.py

# Java 17+ for the Spark tests (tests/spark_setup.sh installs it with apt-get when missing).
# Chromium for the report's browser test (tests/chromium_setup.sh, the same way).
# PostgreSQL for the promotion tests against `mlflow server` (tests/postgres_setup.sh, likewise).
test-setup: $(STAMP)
	tests/spark_setup.sh
	tests/chromium_setup.sh
	tests/postgres_setup.sh

test: test-setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check explainable_model tests examples
	$(BIN)/mypy explainable_model

clean:
	rm -rf $(VENV) mlflow.db mlruns mlartifacts
