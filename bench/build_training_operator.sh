#!/usr/bin/env bash
# Build Kubeflow training-operator v1 (cmd/training-operator.v1) from its Go module, for bench/scale.py only.
# Usage: bench/build_training_operator.sh   -> prints the binary's path on the last line
# Cached under $LEPTON_CACHE_DIR (default ~/.cache/lepton-operator) keyed by version; a second run does nothing.
# Nothing of training-operator is kept in this repository: bench/go/training-operator is a wrapper go.mod,
# the sources and the CRDs come from the Go module cache (`go env GOMODCACHE`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "github.com/kubeflow/training-operator" {print $3}' "$here/go/training-operator/go.mod")
cache=${LEPTON_CACHE_DIR:-$HOME/.cache/lepton-operator}
out="$cache/bin/training-operator-$version"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
if [ ! -f "$out/.complete" ]; then
  echo "[build] training-operator $version (cold: a few minutes)" >&2
  mkdir -p "$out.tmp"
  (cd "$here/go/training-operator" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out.tmp/training-operator" \
      github.com/kubeflow/training-operator/cmd/training-operator.v1)
  rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
fi
# The module's own manifests (CRDs) are read from the module cache at run time.
(cd "$here/go/training-operator" && go mod download github.com/kubeflow/training-operator >/dev/null)
echo "$out/training-operator"
