#!/usr/bin/env bash
# The main job, locally: the carrier makes a test certification-body CA and
# issues an institution certificate as a password-protected PKCS#12 file; the
# agent imports it into its state directory and prints `cert status`.
# Everything lands in ./demo-out (recreated on each run); nothing is sent
# anywhere. Later issues grow this into carrier server + agent on loopback.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/demo-out"
CODE="${DEMO_INSTITUTION_CODE:-1312345678}"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "Building cpe-agent and cpe-provision"
cargo build --release --locked --bins -p cpe-agent -p cpe-provision
AGENT="$ROOT/target/release/cpe-agent"
PROVISION="$ROOT/target/release/cpe-provision"

rm -rf "$OUT"
mkdir -p "$OUT"
umask 077
printf 'demo-password-%s\n' "$RANDOM$RANDOM" >"$OUT/p12-password"

step "Carrier: a test certification-body CA (in production the real body issues certificates)"
show "$PROVISION" ca init --dir "$OUT/ca" --name "Demo Certification Body"

step "Carrier: the institution certificate for $CODE as a password-protected PKCS#12 file"
show "$PROVISION" cert issue --ca "$OUT/ca" --institution "$CODE" --name "Demo Clinic" \
    --out "$OUT/clinic.p12" --password-file "$OUT/p12-password"

step "Device: agent configuration"
cat >"$OUT/agent.toml" <<TOML
# Relative paths are relative to this file.
state_dir = "state"
trust_anchors = ["ca/ca.pem"]
institution_code = "$CODE"

[csr]
common_name = "Demo Clinic"
TOML
cat "$OUT/agent.toml"

step "Device: import the PKCS#12 file"
show "$AGENT" --config "$OUT/agent.toml" cert import "$OUT/clinic.p12" --password-file "$OUT/p12-password"

step "Device: a wrong password is refused and changes nothing (exit code 1 expected)"
echo wrong >"$OUT/wrong-password"
set +e
"$AGENT" --config "$OUT/agent.toml" --lang en cert import "$OUT/clinic.p12" --password-file "$OUT/wrong-password"
rc=$?
set -e
echo "exit code: $rc"
[ "$rc" -eq 1 ]

step "Device: cert status (Japanese)"
show "$AGENT" --config "$OUT/agent.toml" --lang ja cert status

step "Device: cert status --json"
show "$AGENT" --config "$OUT/agent.toml" cert status --json

step "Done. Files are in $OUT"
