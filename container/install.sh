#!/bin/sh
# Installs the locked DeepLabCut stack and dlcrun into /opt/dlcrun inside the image.
#
# The one install recipe behind both container/dlc.def (Apptainer) and container/Dockerfile, so the
# two cannot drift. Two steps, so an OCI build caches the multi-GB dependency layer across dlcrun edits:
#
#   install.sh deps   ENGINE VARIANT   system Python from the base, a venv, the lock with --no-deps
#                                      (the lock is the whole closure: pip resolves nothing) in pip's
#                                      hash-checking mode: a file whose sha256 the lock does not
#                                      list (make lock-hashes) stops the build
#   install.sh dlcrun ENGINE VARIANT   dlcrun itself, `pip check`, and /opt/dlcrun/image.json
#
# ENGINE: pytorch (requirements.lock) | tensorflow (requirements-tensorflow.lock).
# VARIANT: gpu | cpu; cpu leaves out the CUDA wheels (nvidia-*, cuda-*, triton) and takes the CPU
# builds of torch/torchvision (`+cpu` versions) from TORCH_CPU_INDEX, in a second pip call at the
# lock's versions but without hashes: the lock hashes PyPI's files, and the PyTorch index's +cpu
# builds are not on PyPI. A wheelhouse mounted at /wheels (an offline build, or a site mirror) is
# searched before the index: the same pins, from local files, which must match the lock's hashes.
set -eu

STEP=${1:?usage: install.sh deps|dlcrun ENGINE VARIANT}
ENGINE=${2:-pytorch}
VARIANT=${3:-gpu}
SRC=/opt/dlcrun-src
PREFIX=/opt/dlcrun
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

case "$ENGINE" in
  pytorch) LOCK=$SRC/requirements.lock; APT_EXTRA="" ;;
  # opencv-python (not -headless), pulled in by imgaug, needs libGL at import time.
  tensorflow) LOCK=$SRC/requirements-tensorflow.lock; APT_EXTRA="libgl1 libglib2.0-0" ;;
  *) echo "install.sh: ENGINE must be pytorch or tensorflow, not '$ENGINE'" >&2; exit 2 ;;
esac
case "$VARIANT" in
  gpu|cpu) ;;
  *) echo "install.sh: VARIANT must be gpu or cpu, not '$VARIANT'" >&2; exit 2 ;;
esac

export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# pip's bundled CA list knows no site proxy or private CA; the system bundle (or one mounted over it) does.
export PIP_CERT="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
if [ -n "$(ls -A /wheels 2>/dev/null)" ]; then export PIP_FIND_LINKS=/wheels; fi
pip="$PREFIX/bin/python -m pip"

case "$STEP" in
deps)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  # rclone: the rclone:REMOTE:path storage backend runs the rclone binary.
  apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates rclone $APT_EXTRA >/dev/null
  rm -rf /var/lib/apt/lists/*
  python3 -m venv "$PREFIX"
  requirements=$LOCK
  if [ "$VARIANT" = cpu ]; then
    requirements=/tmp/dlcrun-cpu.lock
    # A requirement is its `name==version \` line and the indented --hash lines after it.
    awk '/^[^ \t]/ { skip = tolower($0) ~ /^(nvidia-|cuda-|triton==|torch==|torchvision==)/ } !skip' \
      "$LOCK" > "$requirements"
  fi
  # filterpy 1.4.5 is an sdist only (pure Python; 2.0.0's wheel breaks DLC's trackers: see the lock).
  $pip install -q --require-hashes --no-deps --only-binary=:all: --no-binary=filterpy -r "$requirements"
  if [ "$VARIANT" = cpu ]; then
    torch=$(grep -E '^(torch|torchvision)==' "$LOCK" | cut -d' ' -f1)
    # shellcheck disable=SC2086
    $pip install -q --no-deps --only-binary=:all: --index-url "$TORCH_CPU_INDEX" $torch
  fi
  rm -f /tmp/dlcrun-cpu.lock
  ;;
dlcrun)
  $pip install -q --no-deps --no-build-isolation "$SRC"
  $pip check
  "$PREFIX/bin/python" - "$PREFIX/image.json" "$ENGINE" "$VARIANT" "$(sha256sum "$LOCK" | cut -d' ' -f1)" <<'PY'
import datetime, json, os, platform, sys
path, engine, variant, lock_sha256 = sys.argv[1:]
info = {
    "engine": engine,
    "variant": variant,
    "base": os.environ.get("DLCRUN_BASE", ""),
    "lock_sha256": lock_sha256,
    "python": platform.python_version(),
    "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
}
with open(path, "w") as fh:
    json.dump(info, fh, indent=2)
    fh.write("\n")
PY
  rm -rf "$SRC"
  ;;
*) echo "install.sh: step must be deps or dlcrun, not '$STEP'" >&2; exit 2 ;;
esac
