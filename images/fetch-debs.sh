#!/usr/bin/env bash
# Downloads the Debian 12 (bookworm) arm64 packages the firmware image is made
# of into a cache directory, with `apt-get download` (nothing else is fetched).
#
#   bash images/fetch-debs.sh            # into $CPE_IMAGE_DEBS (default ~/.cache/cpe-image/debs)
#
# Idempotent: a package whose .deb is already in the cache is not downloaded
# again. Needs the arm64 architecture enabled in dpkg and a fresh apt index
# (scripts/setup.sh does both: `dpkg --add-architecture arm64; apt-get update`).
# Prints the cache directory on its last line.
set -euo pipefail

DEBS="${CPE_IMAGE_DEBS:-${XDG_CACHE_HOME:-$HOME/.cache}/cpe-image/debs}"
mkdir -p "$DEBS"

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "fetch-debs.sh: arm64 is not enabled; run: dpkg --add-architecture arm64 && apt-get update" >&2
    exit 2
fi

# The kernel: the meta package names the current ABI's image package.
KERNEL_PKG="$(apt-cache depends linux-image-arm64:arm64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*-arm64\)\(:arm64\)\{0,1\}$/\1/p' | head -1)"
if [ -z "$KERNEL_PKG" ]; then
    echo "fetch-debs.sh: apt knows no linux-image-arm64:arm64; run apt-get update after enabling arm64" >&2
    exit 2
fi

# busybox (the whole userland of the image), nftables and the shared
# libraries of `nft` (build.sh checks that every NEEDED soname is present).
PACKAGES=(
    "$KERNEL_PKG"
    busybox-static
    nftables libnftables1 libmnl0 libnftnl11 libxtables12 libjansson4 libgmp10
    libedit2 libbsd0 libmd0 libtinfo6
    libc6
)

# As root, apt would drop to its _apt user, which cannot write a home cache.
APT_OPTS=()
[ "$(id -u)" -ne 0 ] || APT_OPTS=(-o APT::Sandbox::User=root)

fetched=0
for p in "${PACKAGES[@]}"; do
    if compgen -G "$DEBS/${p}_*_arm64.deb" >/dev/null; then
        continue
    fi
    echo "fetch-debs.sh: apt-get download $p:arm64"
    (cd "$DEBS" && apt-get download -q "${APT_OPTS[@]}" "$p:arm64" </dev/null)
    fetched=$((fetched + 1))
done
# One kernel only: drop images of an older ABI once the meta package moved on.
for deb in "$DEBS"/linux-image-*_arm64.deb; do
    case "${deb##*/}" in
        "${KERNEL_PKG}_"*) ;;
        *) rm -f "$deb" && echo "fetch-debs.sh: removed ${deb##*/} (superseded by $KERNEL_PKG)" ;;
    esac
done
echo "fetch-debs.sh: ${#PACKAGES[@]} packages in cache, $fetched downloaded now"
echo "$DEBS"
