# The front door. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint lock clean

install: $(STAMP)

# Exact pins from requirements.lock (torch included: a looser spec pulls a multi-GB CUDA build).
$(STAMP): requirements.lock requirements-test.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock -r requirements-test.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

demo: install
	$(BIN)/dlcrun demo --workdir demo

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check src tests

# Re-resolve the lock from pyproject's ranges (run by a maintainer, then commit the result).
lock: install
	$(BIN)/python -m pip freeze --exclude-editable \
	  | grep -viE '^(pytest|pluggy|iniconfig|ruff|trustme|cryptography|cffi|pycparser)==' > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf demo .pytest_cache
