#!/usr/bin/env bash
# Builds what a real node of the real-cluster tier runs, once, into a cache outside the
# repository, and prints the directory holding it:
#   kubelet, kube-scheduler, kube-controller-manager  from the k8s.io/kubernetes module pinned in
#                                                     hack/controlplane/go.mod (the API server's)
#   containerd, containerd-shim-runc-v2, ctr          from the module pinned in containerd/go.mod
#   pause                                             the kubernetes module's build/pause/linux/
#                                                     pause.c, gcc -Os -static (the sandbox image)
# runc is Debian's (make deps). Safe to run again: an existing, complete build is reused.
#
#   HYBRIDNET_REALCLUSTER_CACHE  where builds are kept (default ~/.cache/hybridnet/realcluster)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
controlplane="$here/../controlplane"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$controlplane/go.mod")"
containerd_version="$(awk '$1 == "require" && $2 == "github.com/containerd/containerd/v2" {print $3}' \
  "$here/containerd/go.mod")"
cache_root="${HYBRIDNET_REALCLUSTER_CACHE:-${HOME}/.cache/hybridnet/realcluster}"
# Bump recipe when the way of building changes, so an old cache entry is not reused.
recipe=1
out="$cache_root/kubernetes-${k8s_version}_containerd-${containerd_version}_r${recipe}"
binaries=(kubelet kube-scheduler kube-controller-manager containerd containerd-shim-runc-v2 ctr pause)

complete() {
  for b in "${binaries[@]}"; do [[ -x "$out/$b" ]] || return 1; done
  [[ -f "$out/.complete" ]]
}

if complete; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: the Go toolchain (go) is required" >&2; exit 1; }
command -v gcc >/dev/null || { echo "build.sh: gcc is required (the pause binary)" >&2; exit 1; }

# Build in scratch copies so go.sum updates never touch the checkout.
work="$(mktemp -d)"
trap 'rm -rf "$work" "$out.partial"' EXIT
mkdir -p "$work/kubernetes" "$work/containerd" "$out.partial"
cp "$controlplane/go.mod" "$work/kubernetes/"
[[ -f "$controlplane/go.sum" ]] && cp "$controlplane/go.sum" "$work/kubernetes/"
cp "$here/containerd/go.mod" "$work/containerd/"
[[ -f "$here/containerd/go.sum" ]] && cp "$here/containerd/go.sum" "$work/containerd/"

started=$(date +%s)
echo "building node binaries kubernetes ${k8s_version} containerd ${containerd_version} into $out" \
  "(about 5 minutes on 2 cores after the control plane's build, which shares its Go build cache;" \
  "9 CPU-minutes from a cold Go build cache)" >&2
export CGO_ENABLED=0 GOFLAGS=-mod=mod

cd "$work/kubernetes"
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
k8s_flags="-X k8s.io/component-base/version.gitVersion=${k8s_version}"
k8s_flags+=" -X k8s.io/component-base/version.gitMajor=1"
k8s_flags+=" -X k8s.io/component-base/version.gitMinor=${minor}"
k8s_flags+=" -X k8s.io/component-base/version.gitTreeState=clean"
echo "  go build kubelet kube-scheduler kube-controller-manager" >&2
go build -trimpath -ldflags "-s -w ${k8s_flags}" -o "$out.partial/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kube-controller-manager

echo "  gcc -Os -static build/pause/linux/pause.c -> pause" >&2
k8s_dir="$(go mod download -json k8s.io/kubernetes | awk -F'"' '$2 == "Dir" {print $4}')"
gcc -Os -Wall -Werror -static -DVERSION="${k8s_version}-hybridnet" -o "$out.partial/pause" \
  "$k8s_dir/build/pause/linux/pause.c"
strip "$out.partial/pause"

cd "$work/containerd"
ctd="github.com/containerd/containerd/v2"
ctd_flags="-X ${ctd}/version.Version=${containerd_version} -X ${ctd}/version.Package=${ctd}"
echo "  go build containerd containerd-shim-runc-v2 ctr" >&2
go build -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "-s -w ${ctd_flags}" \
  -o "$out.partial/" "${ctd}/cmd/containerd" "${ctd}/cmd/containerd-shim-runc-v2" "${ctd}/cmd/ctr"

touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
echo "node binaries built in $(( $(date +%s) - started ))s" >&2
echo "$out"
