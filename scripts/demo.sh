#!/usr/bin/env bash
# The main job, locally: the carrier makes a test certification-body CA and
# issues an institution certificate as a password-protected PKCS#12 file; the
# agent imports it and prints `cert status`. Then the carrier server runs on
# loopback, the agent reports to it over mutual TLS, the operator lists the
# device and pushes a command, the agent stops and the carrier raises the
# "down" alert. Everything lands in ./demo-out (recreated on each run);
# nothing leaves 127.0.0.1.
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

step "Carrier: the server's TLS certificate and the carrier server on 127.0.0.1 (SQLite store)"
show "$PROVISION" ca server-cert --ca "$OUT/ca" --name localhost --name 127.0.0.1 --out "$OUT/server"
SERVER_PID=""
AGENT_PID=""
cleanup() {
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT
"$PROVISION" serve --listen 127.0.0.1:0 --database "sqlite:$OUT/carrier.db" \
    --tls-cert "$OUT/server.crt.pem" --tls-key "$OUT/server.key.pem" --client-ca "$OUT/ca/ca.pem" \
    --enrol-ca "$OUT/ca" --silent-after 6 --check-every 1 >"$OUT/server.out" 2>"$OUT/server.log" &
SERVER_PID=$!
for _ in $(seq 50); do grep -q '^listening on' "$OUT/server.out" 2>/dev/null && break; sleep 0.1; done
ADDR="$(sed -n 's/^listening on //p' "$OUT/server.out")"
[ -n "$ADDR" ] || { cat "$OUT/server.log"; exit 1; }
echo "carrier server listening on $ADDR (log: $OUT/server.log)"

step "Device: report to the carrier every 3 s (cpe-agent run)"
cat >>"$OUT/agent.toml" <<TOML

[carrier]
url = "https://$ADDR"
ca = "ca/ca.pem"
interval_s = 3
sample_s = 1
long_poll_s = 2
TOML
"$AGENT" --config "$OUT/agent.toml" run 2>"$OUT/agent.log" &
AGENT_PID=$!
sleep 5
show "$PROVISION" devices --database "sqlite:$OUT/carrier.db"
DEVICE="$CODE/main"

step "Operator: ask the device for a heartbeat now (delivered by long-poll)"
show "$PROVISION" command --device "$DEVICE" report-now --database "sqlite:$OUT/carrier.db"
sleep 3
"$PROVISION" device show "$DEVICE" --database "sqlite:$OUT/carrier.db" | sed -n '1,8p;/recent commands/,$p'

step "Device: the agent stops; after 6 s of silence the carrier raises a \"down\" alert"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || true
AGENT_PID=""
sleep 8
show "$PROVISION" devices --database "sqlite:$OUT/carrier.db"
show "$PROVISION" alerts --database "sqlite:$OUT/carrier.db"

step "Done. Files are in $OUT (server.log, agent.log, carrier.db)"
