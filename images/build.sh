#!/usr/bin/env bash
# Builds the aarch64 firmware image for `qemu-system-aarch64 -M virt` from
# Debian 12 arm64 packages and the project's aarch64-musl agent:
#
#   bash images/build.sh                         # builds the agent with cross/build.sh first
#   AGENT_BIN=path/to/cpe-agent bash images/build.sh   # or takes an existing aarch64 binary
#
# Output (CPE_IMAGE_OUT, default target/image/):
#   vmlinuz             Debian's arm64 kernel Image, gzip'd (qemu -kernel loads it)
#   initramfs.cpio.gz   the whole root filesystem: busybox, nft + its libraries, the agent,
#                       kernel modules with modules.dep, /init
#   manifest.txt        package versions, modules, file sizes
#   agent-commands      optional agent commands the binary has (apply-state, diagnose, orders)
#
# Nothing is downloaded but Debian packages (images/fetch-debs.sh, apt-get download).
# Needs: dpkg-deb, cpio, gzip, readelf (binutils); optional qemu-aarch64-static to run
# busybox depmod at build time (without it the image runs depmod at boot).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/images"
OUT="${CPE_IMAGE_OUT:-$ROOT/target/image}"
TARGET=aarch64-unknown-linux-musl

die() {
    echo "images/build.sh: $*" >&2
    exit 1
}
for tool in dpkg-deb cpio gzip readelf; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run scripts/setup.sh"
done

# Kernel modules loaded at boot (their dependencies come along). Everything
# else nft needs is autoloaded by the kernel through /sbin/modprobe
# (nft-expr-*, nft-chain-* aliases) from the modules shipped below.
BOOT_MODULES=(virtio_pci virtio_blk virtio_net virtio_rng ext4 crc32c_generic nf_tables)
# Shipped for autoloading: the agent's suspension ruleset (inet table, meta
# iifname/oifname, counter: built into nf_tables; reject: nft_reject_inet; its
# HTTP redirect to the notice page: nft_chain_nat, nft_nat, nft_redir for a
# wildcard [notice] listen, nft_fib_inet for `fib daddr type`), conntrack and
# NAT for a LAN behind the device, veth for a test LAN.
EXTRA_MODULES=(nft_reject_inet nft_ct nft_nat nft_redir nft_masq nft_chain_nat nft_limit nft_log nft_fib_inet veth)

# --- 1. the agent -------------------------------------------------------------
if [ -n "${AGENT_BIN:-}" ]; then
    [ -f "$AGENT_BIN" ] || die "AGENT_BIN=$AGENT_BIN does not exist"
else
    echo "images/build.sh: building the agent (CROSS_TARGETS=$TARGET bash cross/build.sh)"
    CROSS_TARGETS="$TARGET" bash "$ROOT/cross/build.sh"
    target_dir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    AGENT_BIN="${target_dir:-${CARGO_TARGET_DIR:-$ROOT/target}}/$TARGET/release/cpe-agent"
fi
file -b "$AGENT_BIN" 2>/dev/null | grep -q 'ARM aarch64' || die "$AGENT_BIN is not an aarch64 binary"

# --- 2. Debian packages -----------------------------------------------------
DEBS="$(bash "$HERE/fetch-debs.sh" | tail -1)"
[ -d "$DEBS" ] || die "fetch-debs.sh gave no cache directory"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cpe-image.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
PKG="$WORK/pkgs"
RFS="$WORK/rootfs"
mkdir -p "$PKG" "$RFS"
: >"$WORK/versions"
for deb in "$DEBS"/*_arm64.deb; do
    dpkg-deb -x "$deb" "$PKG"
    dpkg-deb -f "$deb" Package Version | sed 's/^[^:]*: //' | paste -sd' ' >>"$WORK/versions"
done
KVER="$(ls "$PKG/lib/modules")"
[ "$(wc -w <<<"$KVER")" -eq 1 ] || die "expected one kernel in the cache, found: $KVER (empty $DEBS to refetch)"
KMOD="$PKG/lib/modules/$KVER"

# --- 3. root filesystem -----------------------------------------------------
mkdir -p "$RFS"/{bin,sbin,usr/bin,usr/sbin,lib/aarch64-linux-gnu,etc/cpe-agent,etc/cpe-image,dev,proc,sys,run,tmp,mnt,var/lib/cpe-agent,etc/udhcpc}
install -m 0755 "$PKG/bin/busybox" "$RFS/bin/busybox"
ln -s busybox "$RFS/bin/sh"
install -m 0755 "$PKG/usr/sbin/nft" "$RFS/usr/sbin/nft"
install -m 0755 "$AGENT_BIN" "$RFS/usr/bin/cpe-agent"
install -m 0755 "$HERE/init/init" "$RFS/init"
# busybox's own DHCP client script, as Debian ships it.
install -m 0755 "$PKG/usr/share/doc/busybox-static/examples/udhcp/simple.script" \
    "$RFS/etc/udhcpc/default.script"
printf '%s\n' "${BOOT_MODULES[@]}" >"$RFS/etc/cpe-image/modules"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$RFS/etc/passwd"
printf 'root:x:0:\n' >"$RFS/etc/group"
printf 'cpe\n' >"$RFS/etc/hostname"

# Shared libraries of nft, found by NEEDED, and the glibc loader.
find_lib() {
    local d
    for d in lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu; do
        [ -e "$PKG/$d/$1" ] && {
            echo "$PKG/$d/$1"
            return 0
        }
    done
    return 1
}
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
queue=("$RFS/usr/sbin/nft")
while [ "${#queue[@]}" -gt 0 ]; do
    elf="${queue[0]}"
    queue=("${queue[@]:1}")
    for so in $(needed "$elf"); do
        [ -e "$RFS/lib/aarch64-linux-gnu/$so" ] && continue
        src="$(find_lib "$so")" || die "nft needs $so, which no package in $DEBS provides; add its package to images/fetch-debs.sh"
        cp -L "$src" "$RFS/lib/aarch64-linux-gnu/$so"
        queue+=("$RFS/lib/aarch64-linux-gnu/$so")
    done
done
ln -s aarch64-linux-gnu/ld-linux-aarch64.so.1 "$RFS/lib/ld-linux-aarch64.so.1"

# Kernel modules: the closure of the lists above over `depends=`.
# Module names use _ where file names may use - (virtio_rng: virtio-rng.ko).
mod_path() { (cd "$KMOD" && find kernel -name "${1//[-_]/[-_]}.ko" | head -1); }
mod_depends() { strings -a "$KMOD/$1" | sed -n 's/^depends=//p' | tr ',' ' '; }
declare -A SHIPPED=()
ship_module() {
    local rel dep
    rel="$(mod_path "$1")"
    [ -n "$rel" ] || die "module $1 not found in $KVER"
    [ -n "${SHIPPED[$rel]:-}" ] && return 0
    SHIPPED[$rel]=1
    for dep in $(mod_depends "$rel"); do ship_module "$dep"; done
    install -D -m 0644 "$KMOD/$rel" "$RFS/lib/modules/$KVER/$rel"
}
for m in "${BOOT_MODULES[@]}" "${EXTRA_MODULES[@]}"; do ship_module "$m"; done
cp "$KMOD/modules.builtin" "$KMOD/modules.order" "$RFS/lib/modules/$KVER/" 2>/dev/null || true
if command -v qemu-aarch64-static >/dev/null 2>&1; then
    qemu-aarch64-static "$RFS/bin/busybox" depmod -b "$RFS" "$KVER"
    DEPMOD="at build time (busybox depmod under qemu-aarch64-static)"
else
    DEPMOD="at boot (no qemu-aarch64-static here)"
fi

# Which optional agent commands this binary has (the end-to-end test gates
# the steps that need them): one per line in agent-commands.
: >"$WORK/agent-commands"
if command -v qemu-aarch64-static >/dev/null 2>&1; then
    for c in apply-state diagnose orders; do
        if qemu-aarch64-static "$RFS/usr/bin/cpe-agent" "$c" --help >/dev/null 2>&1; then
            echo "$c" >>"$WORK/agent-commands"
        fi
    done
    COMMANDS="$(paste -sd' ' "$WORK/agent-commands")"
else
    COMMANDS="unknown (no qemu-aarch64-static here)"
    rm "$WORK/agent-commands"
fi

# --- 4. initramfs -------------------------------------------------------------
# /dev/console must exist before /init runs, and cpio cannot make device
# nodes without root: append a hand-written newc archive holding it.
newc_entry() { # name mode rdevmajor rdevminor (no data)
    local name="$1" n
    n=$((${#name} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
        "$5" "$2" 0 0 1 0 0 0 0 "$3" "$4" "$n" 0 "$name"
    # header (110 bytes) + name padded to a multiple of 4
    local pad=$(((4 - (110 + n) % 4) % 4))
    head -c "$pad" /dev/zero
}
{
    (cd "$RFS" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible -R 0:0)
    {
        newc_entry dev/console $((0020600)) 5 1 721
        newc_entry 'TRAILER!!!' 0 0 0 0
    }
} >"$WORK/initramfs.cpio"
mkdir -p "$OUT"
gzip -9n <"$WORK/initramfs.cpio" >"$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
# Debian's arm64 vmlinuz is the raw Image; qemu (and U-Boot's booti with
# kernel_comp_addr_r) load a gzip'd one, a third of the size.
gzip -9n <"$PKG/boot/vmlinuz-$KVER" >"$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
rm -f "$OUT/agent-commands"
[ -f "$WORK/agent-commands" ] && cp "$WORK/agent-commands" "$OUT/agent-commands"

# --- 5. manifest and sizes ---------------------------------------------------
size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
k=$(size "$OUT/vmlinuz")
i=$(size "$OUT/initramfs.cpio.gz")
u=$(size "$WORK/initramfs.cpio")
a=$(size "$RFS/usr/bin/cpe-agent")
{
    echo "kernel $KVER"
    echo "agent $(sha256sum "$AGENT_BIN" | cut -c1-16) $a bytes"
    echo "agent commands: ${COMMANDS:-none of apply-state diagnose orders}"
    echo "modules.dep $DEPMOD"
    echo "modules: $(printf '%s\n' "${!SHIPPED[@]}" | sed 's,.*/,,; s,\.ko$,,' | LC_ALL=C sort | paste -sd' ')"
    echo "packages:"
    sed 's/^/  /' "$WORK/versions"
    echo "sizes: vmlinuz $k initramfs.cpio.gz $i (uncompressed $u) total $((k + i))"
} >"$OUT/manifest.txt"
echo
echo "images/build.sh: image in $OUT (kernel $KVER)"
printf '  %-22s %10s bytes  %s\n' vmlinuz "$k" "$(mib "$k")"
printf '  %-22s %10s bytes  %s (uncompressed %s)\n' initramfs.cpio.gz "$i" "$(mib "$i")" "$(mib "$u")"
printf '  %-22s %10s bytes  %s\n' total "$((k + i))" "$(mib $((k + i)))"
printf '  %-22s %10s bytes  %s\n' "  of which cpe-agent" "$a" "$(mib "$a")"
echo "IMAGE_SIZE kernel=$k initramfs=$i total=$((k + i))"
