# The front door. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo test test-fast lint lock clean

install: $(STAMP)

# Exact pins from requirements.lock (torch included: a looser spec pulls a multi-GB CUDA build).
$(STAMP): requirements.lock requirements-test.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock -r requirements-test.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

# The local Slurm cluster the tests start needs slurm-wlm and munge (Debian/Ubuntu). Installed only
# as root and only when missing; otherwise those tests skip and say why.
SYSTEM_BINS := sbatch slurmctld slurmd munged
system-deps:
	@missing=0; for b in $(SYSTEM_BINS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$b >/dev/null || missing=1; done; \
	if [ $$missing = 0 ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "note: slurm-wlm and munge are missing; the Slurm tests will skip (as root: apt-get install slurm-wlm munge)"; exit 0; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge

demo: install
	$(BIN)/dlcrun demo --workdir demo

test: install system-deps
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
