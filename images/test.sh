#!/usr/bin/env bash
# The image section of the test command: lint the packaging, build the
# firmware image, boot it under qemu-system-aarch64 end to end, print figures.
#
#   bash images/test.sh
#   AGENT_BIN=path/to/aarch64/cpe-agent bash images/test.sh   # skip the agent build
#
# Builds the agent with `CROSS_TARGETS=aarch64-unknown-linux-musl bash cross/build.sh`
# (a no-op when the cross section already built it), then images/build.sh into
# target/image, then `cargo test -p cpe-e2e --test image_qemu` with
# CPE_REQUIRE_IMAGE=1 and CPE_REQUIRE_IMAGE_FEATURES=1 (a missing qemu, image or
# agent/carrier command fails instead of skipping); serial console and server
# logs are kept in target/image-test/.
# Figures (printed, never asserted): image sizes, boot-to-first-report time,
# agent VmRSS in the VM idle and after a diagnosis, stripped agent sizes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
T0=$SECONDS

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
TARGET_DIR="${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}"
export CPE_IMAGE_OUT="${CPE_IMAGE_OUT:-$TARGET_DIR/image}"
LOG_DIR="$TARGET_DIR/image-test"
mkdir -p "$LOG_DIR"

echo "=== images/lint.sh"
bash images/lint.sh

echo "=== images/build.sh"
bash images/build.sh 2>&1 | tee "$LOG_DIR/build.log"
t_build=$((SECONDS - T0))

echo "=== cargo build -p cpe-provision; cargo test -p cpe-e2e --test image_qemu"
cargo build --locked -p cpe-provision --bin cpe-provision
t1=$SECONDS
# Every step is required here: a missing agent or carrier command fails the test.
CPE_IMAGE_DIR="$CPE_IMAGE_OUT" CPE_REQUIRE_IMAGE=1 CPE_REQUIRE_IMAGE_FEATURES=1 CPE_IMAGE_TEST_LOGS="$LOG_DIR" \
    cargo test --locked -p cpe-e2e --test image_qemu -- --nocapture 2>&1 | tee "$LOG_DIR/test.log"
t_test=$((SECONDS - t1))

# --- figures ------------------------------------------------------------------
value() { # FILE KEY -> the value of the first KEY=VALUE in FILE, empty if none
    { grep -o "$2=[^ ]*" "$1" || true; } | head -1 | cut -d= -f2
}
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
mb_of_kb() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }
echo
echo "---------------------------------------------------------------------"
echo "image figures (printed, not asserted)"
k="$(value "$LOG_DIR/build.log" kernel)"
i="$(value "$LOG_DIR/build.log" initramfs)"
t="$(value "$LOG_DIR/build.log" total)"
printf '  %-40s %s (%s bytes)\n' "kernel (vmlinuz, gzip)" "$(mib "$k")" "$k"
printf '  %-40s %s (%s bytes)\n' "initramfs (cpio.gz)" "$(mib "$i")" "$i"
printf '  %-40s %s (%s bytes)\n' "image total" "$(mib "$t")" "$t"
boot="$(value "$LOG_DIR/test.log" boot_to_first_report_s)"
idle="$(value "$LOG_DIR/test.log" agent_vmrss_idle_kb)"
diag="$(value "$LOG_DIR/test.log" agent_vmrss_after_diagnosis_kb)"
printf '  %-40s %s s (qemu start to the carrier showing it up; TCG)\n' "boot to first report" "${boot:-?}"
printf '  %-40s %s (target <= 6 MiB)\n' "agent VmRSS idle (>= 60 s up)" "${idle:+$(mb_of_kb "$idle")}"
if [ -n "$diag" ]; then diag="$(mb_of_kb "$diag")"; else diag="not measured"; fi
printf '  %-40s %s\n' "agent VmRSS after a diagnosis" "$diag"
for target in aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf x86_64-unknown-linux-musl; do
    bin="$TARGET_DIR/$target/release/cpe-agent"
    if [ -f "$bin" ]; then
        b=$(stat -c %s "$bin")
        printf '  %-40s %s (%s bytes; target <= 3 MiB)\n' "cpe-agent $target" "$(mib "$b")" "$b"
    else
        printf '  %-40s not built (bash cross/build.sh)\n' "cpe-agent $target"
    fi
done
grep -h '^NOTE ' "$LOG_DIR/test.log" | sed 's/^/  /' || true
printf '  %-40s build %ss, boot test %ss, total %ss\n' "time" "$t_build" "$t_test" "$((SECONDS - T0))"
