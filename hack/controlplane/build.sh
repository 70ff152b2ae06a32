#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from the Go modules pinned in go.mod
# into a cache outside the repository, once. Safe to run again: an existing,
# complete build is reused. Prints the directory holding the binaries.
#
#   HYBRIDNET_CONTROLPLANE_CACHE  where builds are kept (default ~/.cache/hybridnet/controlplane)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$here/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$here/go.mod")"
cache_root="${HYBRIDNET_CONTROLPLANE_CACHE:-${HOME}/.cache/hybridnet/controlplane}"
# Bump recipe when the way of building changes, so an old cache entry is not reused.
recipe=2
out="$cache_root/kubernetes-${k8s_version}_etcd-${etcd_version}_r${recipe}"
binaries=(kube-apiserver etcd kubectl)

complete() {
  for b in "${binaries[@]}"; do [[ -x "$out/$b" ]] || return 1; done
  [[ -f "$out/.complete" ]]
}

if complete; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: the Go toolchain (go) is required" >&2; exit 1; }

# Build in a scratch copy so go.sum updates never touch the checkout.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/go.mod" "$here/go.sum" "$work/" 2>/dev/null || cp "$here/go.mod" "$work/"
mkdir -p "$out.partial"

started=$(date +%s)
echo "building control plane kubernetes ${k8s_version} etcd ${etcd_version} into $out (a cold build takes 10-20 minutes on 2 cores)" >&2
cd "$work"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
version_flags="-X k8s.io/component-base/version.gitVersion=${k8s_version}"
version_flags+=" -X k8s.io/component-base/version.gitMajor=1"
version_flags+=" -X k8s.io/component-base/version.gitMinor=${minor}"
version_flags+=" -X k8s.io/component-base/version.gitTreeState=clean"
for target in \
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver" \
  "kubectl k8s.io/kubernetes/cmd/kubectl" \
  "etcd go.etcd.io/etcd/server/v3"; do
  set -- $target
  echo "  go build $2 -> $1" >&2
  go build -trimpath -ldflags "-s -w ${version_flags}" -o "$out.partial/$1" "$2"
done
touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
echo "control plane built in $(( $(date +%s) - started ))s" >&2
echo "$out"
