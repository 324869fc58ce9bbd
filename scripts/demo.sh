#!/usr/bin/env bash
# The main job, locally: the carrier makes a test certification-body CA and
# issues an institution certificate as a password-protected PKCS#12 file; the
# agent imports it and prints `cert status`. Then the carrier server runs on
# loopback, the agent reports to it over mutual TLS, the operator lists the
# device and pushes a command, asks for a remote diagnosis, runs a compliance
# drill with a signed order (shown on the device's notice page, nothing
# blocked), the device's audit log is exported and verified, the agent stops
# and the carrier raises the "down" alert. Everything lands in ./demo-out
# (recreated on each run).
#
# After the build, the demo re-runs itself inside a network namespace of its
# own whose only interface is loopback (as root, with `ip`; otherwise on the
# host's loopback): a diagnosis probes gateways as a router would, and here
# nothing may leave the machine. So the diagnosis finds no uplink, and says so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/demo-out"
CODE="${DEMO_INSTITUTION_CODE:-1312345678}"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

if [ -z "${CPE_DEMO_INSIDE:-}" ]; then
    step "Building cpe-agent and cpe-provision"
    cargo build --release --locked --bins -p cpe-agent -p cpe-provision
    if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null; then
        NS="cpe-demo-$$"
        ip netns add "$NS"
        trap 'ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$NS" 2>/dev/null || true' EXIT
        ip -n "$NS" link set lo up
        step "Entering network namespace $NS (loopback only)"
        CPE_DEMO_INSIDE=1 ip netns exec "$NS" bash "${BASH_SOURCE[0]}" "$@"
        exit $?
    fi
fi
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
    --enrol-test-ca "$OUT/ca" --silent-after 6 --check-every 1 >"$OUT/server.out" 2>"$OUT/server.log" &
SERVER_PID=$!
for _ in $(seq 50); do grep -q '^listening on' "$OUT/server.out" 2>/dev/null && break; sleep 0.1; done
ADDR="$(sed -n 's/^listening on //p' "$OUT/server.out")"
[ -n "$ADDR" ] || { cat "$OUT/server.log"; exit 1; }
echo "carrier server listening on $ADDR (log: $OUT/server.log)"

step "Carrier: the order-signing key (Ed25519, separate from every TLS key); devices are provisioned with its public key"
show "$PROVISION" keys init --dir "$OUT/order-keys"
"$PROVISION" keys show --dir "$OUT/order-keys" | sed -n '/^\[orders\]/,$p' >>"$OUT/agent.toml"
NOTICE_PORT="${DEMO_NOTICE_PORT:-18080}"
cat >>"$OUT/agent.toml" <<TOML
[notice]
listen = ["127.0.0.1:$NOTICE_PORT"]
contact_ja = "デモ通信 回線窓口 0120-000-000"
contact_en = "Demo carrier desk +81-120-000-000"
TOML

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

step "Operator: remote self-diagnosis (§1.3.2); the verdict comes back as an incident record"
show "$PROVISION" command --device "$DEVICE" diagnose --database "sqlite:$OUT/carrier.db"
for _ in $(seq 30); do
    "$PROVISION" device show "$DEVICE" --json --database "sqlite:$OUT/carrier.db" | grep -q '"latest_incident": {' && break
    sleep 1
done
"$PROVISION" device show "$DEVICE" --database "sqlite:$OUT/carrier.db" | sed -n '/^diagnosis/p'

step "Device: the same diagnosis on site, in Japanese (exit code 0 healthy, 1 fault found)"
set +e
"$AGENT" --config "$OUT/agent.toml" --lang ja diagnose
echo "exit code: $?"
set -e

step "Operator: a compliance drill (§1.3.4): a signed order, shown on the notice page, nothing blocked"
show "$PROVISION" order drill --device "$DEVICE" --reason-ja "訓練: 利用停止の手順確認" \
    --reason-en "drill: suspension procedure" --keys "$OUT/order-keys" --operator demo \
    --database "sqlite:$OUT/carrier.db"
for _ in $(seq 30); do
    "$PROVISION" order list --device "$DEVICE" --database "sqlite:$OUT/carrier.db" | grep -q applied && break
    sleep 1
done
show "$PROVISION" order list --device "$DEVICE" --database "sqlite:$OUT/carrier.db"
show "$AGENT" --config "$OUT/agent.toml" orders status
echo "notice page http://127.0.0.1:$NOTICE_PORT/ (text of the first lines):"
exec 3<>"/dev/tcp/127.0.0.1/$NOTICE_PORT"
printf 'GET / HTTP/1.0\r\nHost: cpe\r\n\r\n' >&3
sed -e 's/<[^>]*>//g' -e '/^[[:space:]]*$/d' <&3 | sed -n '/^HTTP/p;/訓練/p;/drill/p'
exec 3<&-

step "Device: export the hash-chained audit log and verify it, as an auditor would"
show "$AGENT" --config "$OUT/agent.toml" log export --out "$OUT/audit.jsonl"
show "$AGENT" log verify "$OUT/audit.jsonl"

step "Device: the agent stops; after 6 s of silence the carrier raises a \"down\" alert"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || true
AGENT_PID=""
sleep 8
show "$PROVISION" devices --database "sqlite:$OUT/carrier.db"
show "$PROVISION" alerts --database "sqlite:$OUT/carrier.db"

step "Done. Files are in $OUT (server.log, agent.log, carrier.db, audit.jsonl)"
