#!/bin/sh
# `make image`: build dlc.sif with Apptainer from container/dlc.def, or an OCI image with
# Docker/Podman from container/Dockerfile and dlc.sif from that. Prints each command first.
#
# Settings (make variables or environment):
#   BUILDER  apptainer | docker | podman; default: the first of these on PATH
#   ENGINE   pytorch | tensorflow            VARIANT  gpu | cpu
#   BASE     base image (default: the pinned one for ENGINE, given by the Makefile)
#   SIF      output .sif (default dlc.sif)   TAG      OCI image name
#   WHEELS   a folder of wheels searched before PyPI (offline builds; apptainer and podman)
#   BUILD_FLAGS  more words for the build command (a proxy's CA bundle mount, --network=host ...)
#   OCI_ONLY 1: stop after the OCI image (docker/podman run it; no .sif, no archive)
#   DRY_RUN  1: print the commands, run nothing
set -eu

ENGINE=${ENGINE:-pytorch}
VARIANT=${VARIANT:-gpu}
SIF=${SIF:-dlc.sif}
TAG=${TAG:-localhost/dlcrun:$ENGINE-$VARIANT}
WHEELS=${WHEELS:-}
DRY_RUN=${DRY_RUN:-}
BUILD_FLAGS=${BUILD_FLAGS:-}
OCI_ONLY=${OCI_ONLY:-}

fail() { echo "make image: $*" >&2; exit 2; }
have() { command -v "$1" >/dev/null 2>&1; }
run() {
  echo "+ $*"
  [ -n "$DRY_RUN" ] || "$@"
}

case "$ENGINE" in pytorch|tensorflow) ;; *) fail "ENGINE must be pytorch or tensorflow, not '$ENGINE'" ;; esac
case "$VARIANT" in gpu|cpu) ;; *) fail "VARIANT must be gpu or cpu, not '$VARIANT'" ;; esac
[ -n "${BASE:-}" ] || fail "no BASE image for ENGINE=$ENGINE (run it through make, which pins one per engine)"
[ -z "$WHEELS" ] || [ -d "$WHEELS" ] || fail "WHEELS=$WHEELS is not a folder"

if [ -z "${BUILDER:-}" ]; then
  for candidate in apptainer podman docker; do
    if have "$candidate"; then BUILDER=$candidate; break; fi
  done
  [ -n "${BUILDER:-}" ] || fail "needs apptainer (builds $SIF directly) or docker/podman (builds an OCI image, \
then $SIF where apptainer exists); none is on PATH. Install one (https://apptainer.org/docs/admin/main/installation.html, \
https://podman.io/docs/installation), or build on another machine and copy $SIF here"
fi
case "$BUILDER" in apptainer|docker|podman) ;; *) fail "BUILDER must be apptainer, docker or podman, not '$BUILDER'" ;; esac
[ -n "$DRY_RUN" ] || have "$BUILDER" || fail "BUILDER=$BUILDER, but $BUILDER is not on PATH"

echo "make image: $ENGINE ($VARIANT) on $BASE with $BUILDER -> $SIF"
if [ "$BUILDER" = apptainer ]; then
  set -- --build-arg "BASE=$BASE" --build-arg "ENGINE=$ENGINE" --build-arg "VARIANT=$VARIANT"
  [ -z "$WHEELS" ] || set -- "$@" --bind "$WHEELS:/wheels"
  # Unprivileged builds need --fakeroot (user namespaces); root needs nothing.
  [ "$(id -u)" = 0 ] || set -- --fakeroot "$@"
  # shellcheck disable=SC2086
  run apptainer build "$@" $BUILD_FLAGS "$SIF" container/dlc.def
  exit 0
fi

set -- --build-arg "BASE=$BASE" --build-arg "ENGINE=$ENGINE" --build-arg "VARIANT=$VARIANT"
if [ -n "$WHEELS" ]; then
  [ "$BUILDER" = podman ] || fail "WHEELS needs BUILDER=podman or apptainer (docker build cannot mount a folder)"
  set -- "$@" -v "$WHEELS:/wheels:ro"
fi
# shellcheck disable=SC2086
run "$BUILDER" build -f container/Dockerfile -t "$TAG" "$@" $BUILD_FLAGS .
if [ -n "$OCI_ONLY" ]; then
  echo "make image: OCI image $TAG built (OCI_ONLY: no $SIF)"
elif have apptainer; then
  if [ "$BUILDER" = docker ]; then
    run apptainer build "$SIF" "docker-daemon://$TAG"
  else
    run podman save --format oci-archive -o "$SIF.oci.tar" "$TAG"
    run apptainer build "$SIF" "oci-archive://$SIF.oci.tar"
    run rm -f "$SIF.oci.tar"
  fi
elif [ "$BUILDER" = podman ]; then
  run podman save --format oci-archive -o "$SIF.oci.tar" "$TAG"
  echo "make image: no apptainer here; copy $SIF.oci.tar to a machine with apptainer (the cluster) and run:"
  echo "    apptainer build $SIF oci-archive://$SIF.oci.tar"
else
  run docker save -o "$SIF.docker.tar" "$TAG"
  echo "make image: no apptainer here; copy $SIF.docker.tar to a machine with apptainer (the cluster) and run:"
  echo "    apptainer build $SIF docker-archive://$SIF.docker.tar"
fi
