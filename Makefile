PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: setup run test test-slow bench lint clean

## setup: create .venv and install everything (idempotent)
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-devstack.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

## run: the whole platform on the embedded stack (PORT, default 8000)
run: setup
	PORT=$(PORT) $(BIN)/python -m devstack.launcher

## test: every test, against real servers the test session starts (or the environment names)
test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/throughput.py

clean:
	rm -rf .data
