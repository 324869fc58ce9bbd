#!/usr/bin/env bash
# Run every cargo-fuzz target of fuzz/ for a short, fixed time.
#
#   bash scripts/fuzz.sh                 # FUZZ_SECONDS per target (default 20)
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh
#   FUZZ_TARGETS="parse_order" bash scripts/fuzz.sh   # a subset
#
# Needs the nightly toolchain and cargo-fuzz (bash scripts/setup.sh). Crashes
# are kept in fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/.
# Exits non-zero if fuzz/ has no crate, nothing builds, or any target finds a crash.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
case "$FUZZ_SECONDS" in
    '' | *[!0-9]* | 0)
        echo "fuzz.sh: FUZZ_SECONDS must be a positive whole number of seconds (got '$FUZZ_SECONDS')" >&2
        exit 2
        ;;
esac

if [ ! -f fuzz/Cargo.toml ]; then
    echo "fuzz.sh: fuzz/Cargo.toml does not exist: the fuzz crate has not been written yet; nothing to fuzz." >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: 'cargo +nightly fuzz' is not available; run: bash scripts/setup.sh" >&2
    exit 1
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    if ! list="$(cargo +nightly fuzz list)"; then
        echo "fuzz.sh: 'cargo +nightly fuzz list' failed" >&2
        exit 1
    fi
    mapfile -t targets < <(sed '/^[[:space:]]*$/d' <<<"$list")
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz.sh: fuzz/Cargo.toml declares no fuzz targets" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s): ${targets[*]}; ${FUZZ_SECONDS}s each"

# Build all targets once so the per-target time below is fuzzing time.
t0=$SECONDS
if ! cargo +nightly fuzz build; then
    echo "fuzz.sh: cargo +nightly fuzz build failed" >&2
    exit 1
fi
echo "fuzz.sh: built in $((SECONDS - t0))s"

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/cpe-fuzz.XXXXXX")"
declare -A RESULT RUNS WALL FSECS
failed=0
for t in "${targets[@]}"; do
    echo
    echo "=== fuzz $t (${FUZZ_SECONDS}s)"
    log="$LOG_DIR/$t.log"
    t0=$SECONDS
    # libFuzzer prints its progress on stderr; keep it in the log and show the tail.
    # The corpus grows in fuzz/corpus/<t>; fuzz/seeds/<t> (committed) holds valid inputs to start from.
    corpus=("$ROOT/fuzz/corpus/$t")
    mkdir -p "${corpus[0]}"
    [ -d "$ROOT/fuzz/seeds/$t" ] && corpus+=("$ROOT/fuzz/seeds/$t")
    cargo +nightly fuzz run "$t" "${corpus[@]}" -- -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    WALL[$t]=$((SECONDS - t0))
    # "Done 123456 runs in 20 second(s)" is libFuzzer's last line on success.
    done_line="$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)"
    runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' <<<"$done_line")"
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)"
    fi
    RUNS[$t]="${runs:--}"
    FSECS[$t]="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' <<<"$done_line")"
    if [ "$rc" -eq 0 ]; then
        RESULT[$t]=ok
        grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs' "$log" || tail -n 3 "$log"
    else
        RESULT[$t]="FAILED (exit $rc)"
        failed=1
        tail -n 40 "$log"
        echo "full log: $log; crash inputs (if any): fuzz/artifacts/$t/"
    fi
done

echo
printf '%-32s %-18s %14s %8s %10s\n' TARGET RESULT EXECUTIONS WALL EXEC/S
for t in "${targets[@]}"; do
    rate=-
    secs="${FSECS[$t]:-$FUZZ_SECONDS}"
    if [ "${RESULT[$t]}" = ok ] && [[ "${RUNS[$t]}" =~ ^[0-9]+$ ]] && [ "${secs:-0}" -gt 0 ]; then
        rate=$((RUNS[$t] / secs))
    fi
    printf '%-32s %-18s %14s %7ss %10s\n' "$t" "${RESULT[$t]}" "${RUNS[$t]}" "${WALL[$t]}" "$rate"
done

if [ "$failed" -ne 0 ]; then
    echo "fuzz.sh: FAILED (logs in $LOG_DIR)" >&2
    exit 1
fi
rm -rf "$LOG_DIR"
echo "fuzz.sh: ${#targets[@]} target(s) ran ${FUZZ_SECONDS}s each without crashes"
