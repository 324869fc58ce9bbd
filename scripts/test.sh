#!/usr/bin/env bash
# The whole test suite, in order, stopping at the first failing section.
#
#   bash scripts/test.sh
#   FUZZ_SECONDS=60 bash scripts/test.sh     # longer fuzzing (default 20 s per target)
#   TEST_SKIP="fuzz cross" bash scripts/test.sh   # local use only: skip sections by key
#
# Section keys for TEST_SKIP: setup fmt clippy test qemu cross images fuzz. CI sets none.
#
# Sections: setup, fmt, clippy, build+test (host), agent lib tests for aarch64
# under qemu, cross release builds, fuzzing. This is what .ci/run executes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

SECTIONS=()
TIMES=()
T_START=$SECONDS
CURRENT=""
N=0
TOTAL=8
SKIPPED=0

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

summary() {
    local i
    echo
    echo "---------------------------------------------------------------------"
    for i in "${!SECTIONS[@]}"; do
        printf '  %-58s %8s\n' "${SECTIONS[$i]}" "$(fmt_secs "${TIMES[$i]}")"
    done
}

on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -n "$CURRENT" ]; then
        SECTIONS+=("[$N/$TOTAL] $CURRENT  FAILED")
        TIMES+=($((SECONDS - SECTION_START)))
        summary
        echo "test.sh: FAILED in section [$N/$TOTAL] $CURRENT (exit $rc) after $(fmt_secs $((SECONDS - T_START)))"
    fi
}
trap on_exit EXIT

# section KEY NAME COMMAND... : run one section with a header and its elapsed time.
section() {
    local key="$1"
    CURRENT="$2"
    shift 2
    N=$((N + 1))
    if [[ " ${TEST_SKIP:-} " == *" $key "* ]]; then
        echo
        echo "== [$N/$TOTAL] $CURRENT: SKIPPED (TEST_SKIP)"
        SECTIONS+=("[$N/$TOTAL] $CURRENT  SKIPPED")
        TIMES+=(0)
        SKIPPED=$((SKIPPED + 1))
        CURRENT=""
        return 0
    fi
    SECTION_START=$SECONDS
    echo
    echo "====================================================================="
    echo "== [$N/$TOTAL] $CURRENT"
    echo "==   \$ $*"
    echo "====================================================================="
    "$@"
    local took=$((SECONDS - SECTION_START))
    SECTIONS+=("[$N/$TOTAL] $CURRENT")
    TIMES+=("$took")
    echo "== [$N/$TOTAL] $CURRENT: ok ($(fmt_secs "$took"))"
    CURRENT=""
}

build_and_test() {
    # A real PostgreSQL for the carrier-store and end-to-end tests (SQLite needs nothing).
    local url
    url="$(bash scripts/postgres.sh --fresh | tee /dev/stderr | sed -n 's/^CPE_TEST_POSTGRES_URL=//p' | tail -1)"
    if [ -z "$url" ]; then
        echo "test.sh: scripts/postgres.sh printed no CPE_TEST_POSTGRES_URL" >&2
        return 1
    fi
    export CPE_TEST_POSTGRES_URL="$url"
    cargo build --workspace --bins --locked
    # The firmware-image test boots the image the images section builds; here
    # it finds none (and says it skipped), so a stale image is never booted twice.
    CPE_IMAGE_DIR="$ROOT/target/image-not-built-yet" cargo test --workspace --locked
}

section setup "setup" bash scripts/setup.sh
section fmt "rustfmt" cargo fmt --all -- --check
section clippy "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
section test "build + test (host)" build_and_test
section qemu "agent lib + identity tests, aarch64 under qemu" \
    cargo test -p cpe-agent --lib --test identity --target aarch64-unknown-linux-musl --locked
section cross "cross release builds" bash cross/build.sh
section images "firmware image, qemu-system-aarch64 end to end" bash images/test.sh
section fuzz "fuzz (${FUZZ_SECONDS}s per target)" bash scripts/fuzz.sh

summary
if [ "$SKIPPED" -gt 0 ]; then
    echo "test.sh: $((TOTAL - SKIPPED)) SECTIONS PASSED, $SKIPPED SKIPPED (TEST_SKIP=$TEST_SKIP) in $(fmt_secs $((SECONDS - T_START)))"
else
    echo "test.sh: ALL $TOTAL SECTIONS PASSED in $(fmt_secs $((SECONDS - T_START)))"
fi
