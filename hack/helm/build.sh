#!/usr/bin/env bash
# Builds helm from the Go module pinned in go.mod into a cache outside the repository, once,
# and puts cert-manager's CRDs (from its Go module, at CERT_MANAGER_VERSION) next to it: the
# chart's cert-manager mode is dry-run against them. Safe to run again: an existing, complete
# build is reused. Prints the directory holding `helm` and `cert-manager-crds/`.
#
#   HYBRIDNET_HELM_CACHE  where builds are kept (default ~/.cache/hybridnet/helm)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
helm_version="$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3}' "$here/go.mod")"
[[ -n "$helm_version" ]] || { echo "build.sh: no helm.sh/helm/v3 version in $here/go.mod" >&2; exit 1; }
# The release whose CRDs (Issuer, Certificate, ...) the tests install; any cert-manager that
# serves cert-manager.io/v1 runs the chart's objects.
cert_manager_version=v1.19.4
cache_root="${HYBRIDNET_HELM_CACHE:-${HOME}/.cache/hybridnet/helm}"
# Bump recipe when the way of building changes, so an old cache entry is not reused.
recipe=1
out="$cache_root/helm-${helm_version}_cert-manager-${cert_manager_version}_r${recipe}"

complete() {
  [[ -x "$out/helm" && -f "$out/.complete" ]]
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
rm -rf "$out.partial"
mkdir -p "$out.partial/cert-manager-crds"

started=$(date +%s)
echo "building helm ${helm_version} into $out (a cold build takes a few minutes on 2 cores)" >&2
cd "$work"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
# What `helm version` prints, and the Kubernetes version `helm template` assumes without a
# cluster (the control plane's minor, see hack/controlplane/go.mod).
flags="-X helm.sh/helm/v3/internal/version.version=${helm_version}"
flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
flags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
flags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34"
flags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
flags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34"
echo "  go build helm.sh/helm/v3/cmd/helm -> helm" >&2
go build -trimpath -ldflags "-s -w ${flags}" -o "$out.partial/helm" helm.sh/helm/v3/cmd/helm

echo "  go mod download github.com/cert-manager/cert-manager@${cert_manager_version}" >&2
module_dir="$(go mod download -json "github.com/cert-manager/cert-manager@${cert_manager_version}" |
  awk -F'"' '$2 == "Dir" {print $4}')"
[[ -d "$module_dir/deploy/crds" ]] ||
  { echo "build.sh: no deploy/crds in cert-manager ${cert_manager_version} ($module_dir)" >&2; exit 1; }
cp "$module_dir"/deploy/crds/*.yaml "$out.partial/cert-manager-crds/"
chmod -R u+w "$out.partial/cert-manager-crds"

touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
echo "helm built in $(( $(date +%s) - started ))s" >&2
echo "$out"
