#!/usr/bin/env bash
# Builds a user-mode-linux kernel from Debian's linux-source-6.1 (make deps installs it) with
# Debian's own user-mode-linux configuration plus hack/uml/kernel.config built in (802.1Q,
# nftables' inet/ip/ip6 families, SCTP, ...), once, into a cache outside the repository.
# Safe to run again: an existing, complete build of the same inputs is reused. Prints the
# directory holding the kernel, `linux`, and its configuration, `config`.
#
#   build.sh --cached           only print that directory, or exit 3 when it is not built yet
#
#   HYBRIDNET_UML_KERNEL_CACHE  where builds are kept (default ~/.cache/hybridnet/uml-kernel)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_tarball=/usr/src/linux-source-6.1.tar.xz
base_config=/usr/share/doc/user-mode-linux/config.gz
fragment="$here/kernel.config"
cache_root="${HYBRIDNET_UML_KERNEL_CACHE:-${HOME}/.cache/hybridnet/uml-kernel}"
# Bump recipe when the way of building changes, so an old cache entry is not reused.
recipe=1

for input in "$source_tarball" "$base_config"; do
  [[ -f "$input" ]] || {
    echo "build.sh: $input is missing (make deps installs linux-source-6.1 and user-mode-linux)" >&2
    exit 1
  }
done

source_version="$(dpkg-query -W -f='${Version}' linux-source-6.1)"
key="$( { echo "recipe $recipe source $source_version"; zcat "$base_config"; cat "$fragment"; } \
  | sha256sum | cut -c1-16)"
out="$cache_root/linux-${source_version}_${key}"

complete() { [[ -x "$out/linux" && -f "$out/.complete" ]]; }

if complete; then
  echo "$out"
  exit 0
fi
if [[ "${1:-}" == --cached ]]; then
  echo "build.sh: the user-mode-linux kernel is not built yet (make uml-kernel builds it)" >&2
  exit 3
fi
for tool in gcc make flex bison bc tar xz; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is required (make deps)" >&2; exit 1; }
done

mkdir -p "$cache_root"
work="$(mktemp -d "$cache_root/work.XXXXXX")"
trap 'rm -rf "$work" "$out.partial"' EXIT
mkdir -p "$out.partial"
jobs="$(nproc)"

started=$(date +%s)
echo "building the user-mode-linux kernel linux-source-6.1 ${source_version} into $out" \
  "(a cold build takes about 11 CPU-minutes: 25 minutes on 2 busy cores)" >&2
echo "  unpacking $source_tarball" >&2
tar -xf "$source_tarball" -C "$work"
tree="$work/linux-source-6.1"
cd "$tree"

echo "  configuring: Debian's user-mode-linux config + $(basename "$fragment")" >&2
zcat "$base_config" > .config
ARCH=um scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s ARCH=um olddefconfig 2>&1 | { grep -v 'changes choice state' || true; } >&2
# merge_config.sh only warns when a dependency drops a line; a silent drop would only show
# as a test failing inside the guest, so check every line of the fragment here.
missing=()
while IFS= read -r line; do
  [[ "$line" =~ ^CONFIG_ || "$line" =~ ^#\ CONFIG_[A-Z0-9_]+\ is\ not\ set$ ]] || continue
  grep -qxF "$line" .config || missing+=("$line")
done < "$fragment"
if (( ${#missing[@]} )); then
  echo "build.sh: the kernel configuration lost: ${missing[*]}" >&2
  exit 1
fi
cp .config "$out.partial/config"

echo "  make ARCH=um -j${jobs} linux (only the kernel: everything needed is built in)" >&2
# Progress: one line per 500 objects compiled (about 1,700 in all), not every CC line; the
# compiler's and linker's warnings are not ours to act on, errors are shown.
make ARCH=um -j"$jobs" linux 2>&1 | awk '
  / CC /  { n++; if (n % 500 == 0) { printf "  %d objects compiled\n", n > "/dev/stderr"; fflush() } next }
  / LD .*linux$/ { print "  linking" > "/dev/stderr"; next }
  /[Ee]rror/ { print > "/dev/stderr" }'
[[ -x linux ]] || { echo "build.sh: make produced no kernel" >&2; exit 1; }
strip -o "$out.partial/linux" linux

touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
echo "user-mode-linux kernel built in $(( $(date +%s) - started ))s ($(du -h "$out/linux" | cut -f1))" >&2
echo "$out"
