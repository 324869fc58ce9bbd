#!/usr/bin/env bash
# Release build of cpe-agent for every device target, then a size table.
#
#   bash cross/build.sh                  # all targets
#   CROSS_TARGETS="aarch64-unknown-linux-musl" bash cross/build.sh
#   CROSS_SMOKE=0 bash cross/build.sh    # skip the `cpe-agent --help` run under qemu
#
# Linkers, C compilers for ring and qemu runners come from .cargo/config.toml;
# the packages from scripts/setup.sh. Exits non-zero if any build fails, if a
# musl binary is not static, or if a binary does not start (under qemu).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PACKAGE=cpe-agent
BIN=cpe-agent
read -r -a TARGETS <<<"${CROSS_TARGETS:-aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf x86_64-unknown-linux-musl}"
SMOKE="${CROSS_SMOKE:-1}"

# Honour CARGO_TARGET_DIR / build.target-dir: ask cargo where artifacts go.
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
TARGET_DIR="${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}"

# How to start a binary of each target on this x86_64 host (mirrors the runners in .cargo/config.toml).
runner_for() {
    case "$1" in
        aarch64-*) echo "qemu-aarch64-static" ;;
        armv7-*gnueabihf) echo "qemu-arm-static -L /usr/arm-linux-gnueabihf" ;;
        x86_64-*) echo "" ;;
        *) echo "?" ;;
    esac
}

declare -A STATUS SECS
failed=0
t_all=$SECONDS
for t in "${TARGETS[@]}"; do
    echo "=== cargo build --release -p $PACKAGE --bin $BIN --target $t"
    t0=$SECONDS
    # The release profile aborts on panic, so unwind tables (.eh_frame and its
    # index, a sixth of the binary) serve nothing on the device; tests keep
    # them (they unwind), which is why this is not in .cargo/config.toml.
    # Segments aligned to 4 KiB pages, not the linker's 64 KiB default for
    # aarch64: router kernels use 4 KiB pages, and the padding cost ~38 KiB.
    if cargo build --release --locked -p "$PACKAGE" --bin "$BIN" --target "$t" \
        --config "target.$t.rustflags=['-C', 'force-unwind-tables=no', '-C', 'link-arg=-Wl,--no-eh-frame-hdr', '-C', 'link-arg=-Wl,-z,max-page-size=4096']"; then
        STATUS[$t]=ok
    else
        STATUS[$t]="BUILD FAILED"
        failed=1
    fi
    SECS[$t]=$((SECONDS - t0))
    echo "=== $t: ${STATUS[$t]} (${SECS[$t]}s)"
done

echo
printf '%-32s %-7s %10s %8s %6s  %s\n' TARGET STATUS BYTES MiB TIME PATH
for t in "${TARGETS[@]}"; do
    path="$TARGET_DIR/$t/release/$BIN"
    if [ "${STATUS[$t]}" = ok ] && [ -f "$path" ]; then
        bytes=$(stat -c %s "$path")
        mib=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
        printf '%-32s %-7s %10s %8s %5ss  %s\n' "$t" ok "$bytes" "$mib" "${SECS[$t]}" "$path"
    else
        printf '%-32s %-7s %10s %8s %5ss  %s\n' "$t" FAILED - - "${SECS[$t]}" "$path"
    fi
done

echo
for t in "${TARGETS[@]}"; do
    path="$TARGET_DIR/$t/release/$BIN"
    [ "${STATUS[$t]}" = ok ] && [ -f "$path" ] || continue
    desc="$(file -b "$path")"
    echo "$t: $desc"
    case "$t" in
        *-musl*)
            if ! grep -Eq 'statically linked|static-pie linked' <<<"$desc"; then
                echo "  ERROR: $t binary is not static" >&2
                failed=1
            fi
            ;;
    esac
done

if [ "$SMOKE" != 0 ]; then
    echo
    for t in "${TARGETS[@]}"; do
        path="$TARGET_DIR/$t/release/$BIN"
        [ "${STATUS[$t]}" = ok ] && [ -f "$path" ] || continue
        runner="$(runner_for "$t")"
        if [ "$runner" = "?" ]; then
            echo "smoke $t: skipped (no runner known)"
            continue
        fi
        # shellcheck disable=SC2086 # runner is a command line
        if out="$(timeout 60 $runner "$path" --help 2>&1 </dev/null)"; then
            echo "smoke $t: ok (${runner:-native} $BIN --help, $(wc -l <<<"$out") lines)"
        else
            rc=$?
            echo "smoke $t: FAILED (exit $rc) running: ${runner:-native} $path --help" >&2
            sed 's/^/  | /' <<<"$out" | head -20 >&2
            failed=1
        fi
    done
fi

echo
if [ "$failed" -ne 0 ]; then
    echo "cross/build.sh: FAILED after $((SECONDS - t_all))s" >&2
    exit 1
fi
echo "cross/build.sh: ${#TARGETS[@]} targets built in $((SECONDS - t_all))s"
