# The front door. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install install-tf install-login install-movement system-deps demo test test-tf test-fast test-unit lint lock lock-tensorflow lock-tf-dev lock-movement lock-hashes image clean

install: $(STAMP)

# Exact pins from requirements.lock (torch included: a looser spec pulls a multi-GB CUDA build), in
# pip's hash-checking mode: every file's sha256 must be one the lock lists (make lock-hashes). The
# project itself has no single file to hash, so it is installed on its own, without dependencies.
$(STAMP): requirements.lock requirements-test.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock -r requirements-test.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

# A second venv for DLC 2.x (TensorFlow-engine) projects: DLC's TensorFlow engine needs its own
# TensorFlow/Keras and NumPy 1.x, so it does not share the main venv. Exact pins (torch too) in
# requirements-tensorflow-dev.lock; the cluster gets the same engine from `make image ENGINE=tensorflow`.
TF_VENV  ?= .venv-tf
TF_BIN   := $(TF_VENV)/bin
TF_STAMP := $(TF_VENV)/.installed

install-tf: $(TF_STAMP)

$(TF_STAMP): requirements-tensorflow-dev.lock requirements-test.txt pyproject.toml
	@test -x $(TF_BIN)/python || $(PYTHON) -m venv $(TF_VENV)
	$(TF_BIN)/python -m pip install -q --upgrade pip
	$(TF_BIN)/python -m pip install -q --require-hashes -r requirements-tensorflow-dev.lock -r requirements-test.txt
	$(TF_BIN)/python -m pip install -q --no-deps -e .
	@touch $@

# dlcrun without DeepLabCut, for a cluster's login node: select, submit, follow and resubmit runs
# whose indices (and the snapshot pinning) run in the image. A few hundred MB instead of ~7 GB.
# The lock's hashes would put `-c requirements.lock -e .` in hash-checking mode, which refuses the
# editable project; so pip resolves dlcrun's core against the lock's pins without hashes (metadata
# only), its picks are installed from the hashed lock with --require-hashes, then dlcrun --no-deps.
LOGIN_VENV  ?= .venv-login
LOGIN_STAMP := $(LOGIN_VENV)/.installed

install-login: $(LOGIN_STAMP)

$(LOGIN_STAMP): requirements.lock pyproject.toml container/hash_lock.py
	@test -x $(LOGIN_VENV)/bin/python || $(PYTHON) -m venv $(LOGIN_VENV)
	$(LOGIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOGIN_VENV)/bin/python container/hash_lock.py --strip requirements.lock > $(LOGIN_VENV)/constraints.txt
	$(LOGIN_VENV)/bin/python -m pip install -q --dry-run --ignore-installed --report $(LOGIN_VENV)/resolved.json \
	  -c $(LOGIN_VENV)/constraints.txt .
	$(LOGIN_VENV)/bin/python container/hash_lock.py --subset $(LOGIN_VENV)/resolved.json requirements.lock \
	  > $(LOGIN_VENV)/login.lock
	$(LOGIN_VENV)/bin/python -m pip install -q --require-hashes --no-deps -r $(LOGIN_VENV)/login.lock
	$(LOGIN_VENV)/bin/python -m pip install -q --no-deps -e .
	$(LOGIN_VENV)/bin/python -m pip check
	@touch $@

# `movement` (neuroinformatics-unit), in which the tests load dlcrun's outputs
# (tests/support/movement_check.py runs it in a subprocess; dlcrun never imports it). Its own venv:
# movement 0.15 wants pandas 3 and ~115 packages the main lock does not pin (~1.4 GB). Exact pins,
# hash-checked, in requirements-movement.lock; no dlcrun and no test tools in it.
MOVEMENT_VENV  ?= .venv-movement
MOVEMENT_STAMP := $(MOVEMENT_VENV)/.installed
MOVEMENT       ?= movement==0.15.0

install-movement: $(MOVEMENT_STAMP)

$(MOVEMENT_STAMP): requirements-movement.lock
	@test -x $(MOVEMENT_VENV)/bin/python || $(PYTHON) -m venv $(MOVEMENT_VENV)
	$(MOVEMENT_VENV)/bin/python -m pip install -q --upgrade pip
	$(MOVEMENT_VENV)/bin/python -m pip install -q --require-hashes -r requirements-movement.lock
	$(MOVEMENT_VENV)/bin/python -m pip check
	@touch $@

# The local Slurm cluster the tests start needs slurm-wlm and munge (Debian/Ubuntu); the OCI image
# build test needs podman and debootstrap; the rclone tests need rclone (client and WebDAV server); the report's
# browser test needs chromium (headless). Installed only as root and only when missing; otherwise
# those tests skip and say why.
SYSTEM_BINS := sbatch slurmctld slurmd munged podman debootstrap rclone chromium
system-deps:
	@missing=0; for b in $(SYSTEM_BINS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$b >/dev/null || missing=1; done; \
	if [ $$missing = 0 ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "note: some of slurm-wlm, munge, podman, debootstrap, rclone, chromium are missing; their tests will skip" \
	       "(as root: apt-get install slurm-wlm munge podman debootstrap rclone chromium)"; exit 0; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge rclone chromium \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap

demo: install
	$(BIN)/dlcrun demo --workdir demo

# Everything but gpu tests, then the TensorFlow-engine tests again in .venv-tf (where they run).
# .venv-tf is installed only after the main suite: the image-build test needs ~28 GB of disk at its
# peak, and a second 7-9 GB venv beside it ran a CI machine out of space.
test: install install-login install-movement system-deps
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-tf

test-tf: install-tf
	$(TF_BIN)/python -m pytest -m tensorflow

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

test-unit: install
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check src tests benchmarks container
	$(BIN)/ruff format --check src tests benchmarks container

# Re-resolve the lock from pyproject's ranges (run by a maintainer, then commit the result).
# --all keeps setuptools, which torch needs at run time (the image installs the lock with --no-deps).
# The lock's comments are kept; the hashes are then fetched for the new pins (make lock-hashes).
lock: install
	{ grep '^#' requirements.lock; $(BIN)/python -m pip freeze --all --exclude-editable \
	  | grep -viE '^(pip|pytest|pluggy|iniconfig|ruff|trustme|cryptography|cffi|pycparser|spython)=='; } \
	  > requirements.lock.new
	mv requirements.lock.new requirements.lock
	$(BIN)/python container/hash_lock.py requirements.lock

# The .venv-tf lock, from what is installed there (a maintainer runs it after changing the pins).
lock-tf-dev: install-tf
	{ grep '^#' requirements-tensorflow-dev.lock; $(TF_BIN)/python -m pip freeze --all --exclude-editable \
	  | grep -viE '^(pip|pytest|pluggy|iniconfig|ruff|trustme|cryptography|cffi|pycparser|spython)=='; } \
	  > requirements-tensorflow-dev.lock.new
	mv requirements-tensorflow-dev.lock.new requirements-tensorflow-dev.lock
	$(TF_BIN)/python container/hash_lock.py requirements-tensorflow-dev.lock

# The .venv-movement lock: pip resolves $(MOVEMENT) in a throwaway venv (a dry run: metadata only,
# nothing installed), its picks become the pins, then their hashes are fetched (~1 min in all).
lock-movement:
	rm -rf $(MOVEMENT_VENV).resolve && $(PYTHON) -m venv $(MOVEMENT_VENV).resolve
	$(MOVEMENT_VENV).resolve/bin/python -m pip install -q --upgrade pip
	$(MOVEMENT_VENV).resolve/bin/python -m pip install -q --dry-run --ignore-installed \
	  --report $(MOVEMENT_VENV).resolve/resolved.json '$(MOVEMENT)'
	{ grep '^#' requirements-movement.lock; $(MOVEMENT_VENV).resolve/bin/python -c "import json, sys; \
	  print(*sorted((f'{p[\"metadata\"][\"name\"]}=={p[\"metadata\"][\"version\"]}' \
	  for p in json.load(sys.stdin)['install']), key=str.lower), sep='\n')" < $(MOVEMENT_VENV).resolve/resolved.json; } \
	  > requirements-movement.lock.new
	mv requirements-movement.lock.new requirements-movement.lock
	rm -rf $(MOVEMENT_VENV).resolve
	$(PYTHON) container/hash_lock.py requirements-movement.lock

# The TensorFlow image's lock, resolved by pip for the image's Python 3.12 without installing it.
lock-tensorflow: install
	$(BIN)/python container/lock_tensorflow.py
	$(BIN)/python container/hash_lock.py requirements-tensorflow.lock

# The sha256 of every wheel and sdist of each pinned version (from PyPI, all platforms; plus files of
# this machine's local wheel store, as pip is set up, and of WHEELS=DIR, that PyPI lacks or builds
# differently) into requirements.lock, requirements-test.txt and both TensorFlow locks, for pip's
# hash-checking mode. Needs PyPI only; re-running changes nothing until a pin or a file changes.
lock-hashes:
	$(PYTHON) container/hash_lock.py $(if $(WHEELS),--local $(WHEELS))

# The image (container/build.sh says more): `make image`, `make image ENGINE=tensorflow`,
# `make image BUILDER=docker|podman`, `make image DRY_RUN=1` to see the commands only.
# Base images pinned by digest, one per engine (the pytorch one is also the default in
# container/dlc.def and container/Dockerfile; tests/integration/test_container.py keeps the three equal).
ENGINE  ?= pytorch
VARIANT ?= gpu
BASE_pytorch    := docker.io/nvidia/cuda:13.0.3-base-ubuntu24.04@sha256:7c7413a56200486f71f181cad9310f6fd31b6bb21816ade15fc9c1e1e927a5c1
BASE_tensorflow := docker.io/nvidia/cuda:12.8.1-base-ubuntu24.04@sha256:e711c99333fdfe8ae1e677b4972be6c5021f0128a1d31f775c7e58d88921b6a9
BASE    ?= $(BASE_$(ENGINE))

image:
	@ENGINE='$(ENGINE)' VARIANT='$(VARIANT)' BASE='$(BASE)' BUILDER='$(BUILDER)' SIF='$(SIF)' TAG='$(TAG)' \
	  WHEELS='$(WHEELS)' BUILD_FLAGS='$(BUILD_FLAGS)' OCI_ONLY='$(OCI_ONLY)' DRY_RUN='$(DRY_RUN)' \
	  sh container/build.sh

clean:
	rm -rf demo .pytest_cache
