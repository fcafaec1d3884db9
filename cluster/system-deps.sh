#!/usr/bin/env bash
# The Debian packages the local cluster needs (root; `make deps`, and .ci/run). Installs only what is missing.
# - process node: ip (iproute2), nsenter (util-linux)
# - real nodes (kubelet + containerd, docs/cluster.md): containerd, runc, the CNI plugins, busybox-static
#   (their pause and busybox images are built from it), socat (the pods' relay to the API server)
# - `make images` (docs/images.md): mmdebstrap, umoci, skopeo
set -euo pipefail
pkgs=(iproute2 util-linux containerd runc containernetworking-plugins busybox-static socat mmdebstrap umoci skopeo)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "[deps] all present: ${pkgs[*]}" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "[deps] missing ${missing[*]}: run as root (apt-get install)" >&2
  exit 1
fi
echo "[deps] installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
