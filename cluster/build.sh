#!/usr/bin/env bash
# Build the local control plane's binaries from Go modules, cached by version.
# Usage: cluster/build.sh            -> prints the bin dir on the last line
# Cache root: $LEPTON_CACHE_DIR (default ~/.cache/lepton-operator, shared by every clone). A second run with the
# same versions does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${LEPTON_CACHE_DIR:-$HOME/.cache/lepton-operator}
bin="$cache/bin"
mkdir -p "$bin"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

need() { command -v "$1" >/dev/null 2>&1 || { echo "cluster/build.sh: '$1' is missing: $2" >&2; exit 2; }; }
need go "install Go 1.26.x (the Go of Kubernetes $KUBE_VERSION)"
case "$(go env GOVERSION)" in
  go1.26*) ;;
  *) echo "cluster/build.sh: Go $(go env GOVERSION) found; Kubernetes $KUBE_VERSION needs Go 1.26.x (Go 1.27's jsonv2 breaks the apiserver's OpenAPI)" >&2; exit 2 ;;
esac

log() { echo "[build] $*" >&2; }

stamp_ok() { [ -f "$1/.complete" ]; }

kube_ldflags() { # the version stamp every Kubernetes binary reports
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$ld"
}

build_kube() {
  local out="$bin/kubernetes-$KUBE_VERSION"
  stamp_ok "$out" && return 0
  log "kubernetes $KUBE_VERSION: kube-apiserver kube-scheduler kube-controller-manager kubectl (cold: ~7 min, ~2.2 GiB)"
  mkdir -p "$out.tmp"
  (cd "$here/go/kubernetes" && go build -mod=mod -trimpath -ldflags "$(kube_ldflags)" -o "$out.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
}

# The kubelet of the real nodes: same module and release, its own stamp (adding it leaves the
# control-plane build above valid). Linked with cgo off, like the rest.
build_kubelet() {
  local out="$bin/kubelet-$KUBE_VERSION"
  stamp_ok "$out" && return 0
  log "kubelet $KUBE_VERSION (after the control plane: ~1 min)"
  mkdir -p "$out.tmp"
  (cd "$here/go/kubernetes" && go build -mod=mod -trimpath -ldflags "$(kube_ldflags)" -o "$out.tmp/" \
      k8s.io/kubernetes/cmd/kubelet)
  rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
}

build_etcd() {
  local out="$bin/etcd-$ETCD_VERSION"
  stamp_ok "$out" && return 0
  log "etcd $ETCD_VERSION"
  mkdir -p "$out.tmp"
  (cd "$here/go/etcd" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
}

# CoreDNS for the pods of the real nodes: the wrapper module cluster/go/coredns (only the plugins we
# use; no forward plugin), its own stamp.
build_coredns() {
  local out="$bin/coredns-$COREDNS_VERSION"
  stamp_ok "$out" && return 0
  grep -q "github.com/coredns/coredns $COREDNS_VERSION\$" "$here/go/coredns/go.mod" || {
    echo "cluster/build.sh: cluster/go/coredns/go.mod does not require coredns $COREDNS_VERSION (versions.env)" >&2; exit 2; }
  log "coredns $COREDNS_VERSION (~2 min)"
  mkdir -p "$out.tmp"
  (cd "$here/go/coredns" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$out.tmp/coredns" .)
  rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
}

go_install() { # name module version
  local out="$bin/$1-$3"
  stamp_ok "$out" && return 0
  log "$1 $3"
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" go install -trimpath -ldflags "-s -w" "$2@$3"
  rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
}

# Kueue: cmd/kueue of the release (no replace directives: a plain `go install`), plus the release's CRDs and
# webhook manifests from the same module, which cluster/lepton_cluster/kueue.py applies.
build_kueue() {
  local out="$bin/kueue-$KUEUE_VERSION"
  stamp_ok "$out" && return 0
  log "kueue $KUEUE_VERSION (~4 min cold)"
  mkdir -p "$out.tmp/config/crd" "$out.tmp/config/webhook"
  GOBIN="$out.tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
  local src; src="$(go env GOMODCACHE)/sigs.k8s.io/kueue@$KUEUE_VERSION/config/components"
  cp "$src"/crd/bases/*.yaml "$out.tmp/config/crd/"
  cp "$src/webhook/manifests.yaml" "$out.tmp/config/webhook/"
  rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
}

start=$(date +%s)
build_etcd
go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
build_kube
build_kubelet
build_coredns
build_kueue
# One folder of links with the versions of versions.env: what cluster-up puts on PATH.
current="$bin/current"
mkdir -p "$current"
ln -sf "$bin/kubernetes-$KUBE_VERSION"/* "$bin/kubelet-$KUBE_VERSION/kubelet" "$current/"
ln -sf "$bin/etcd-$ETCD_VERSION/etcd" "$bin/kwok-$KWOK_VERSION/kwok" "$bin/helm-$HELM_VERSION/helm" \
  "$bin/coredns-$COREDNS_VERSION/coredns" "$current/"
ln -sfn "$bin/kueue-$KUEUE_VERSION/kueue" "$current/kueue"
ln -sfn "$bin/kueue-$KUEUE_VERSION/config" "$current/kueue-config"
log "binaries ready in $(( $(date +%s) - start )) s"
echo "$current"
