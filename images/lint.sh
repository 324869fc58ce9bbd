#!/usr/bin/env bash
# Static checks of the image and packaging files (run by images/test.sh):
#   - `sh -n` on every POSIX shell script (the image's /init, the selftest hook,
#     the procd init script, uci-to-toml), and busybox ash -n on the image's
#     scripts when the arm64 busybox is cached and qemu-aarch64-static is here
#   - shellcheck on every script (when installed; scripts/setup.sh installs it)
#   - systemd-analyze verify on the systemd units (ExecStart paths pointed at a stub)
#   - the OpenWrt Makefile: required variables and defines, and its install
#     recipe run against stub rules.mk/package.mk into a scratch root
#   - the UCI-to-TOML mapping: run on the shipped /etc/config/cpe-agent with a
#     stub `uci`, output parsed as TOML (python3 tomllib) and checked
#
#   bash images/lint.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/images"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/cpe-image-lint.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
failed=0
ok() { echo "lint: ok   $*"; }
bad() {
    echo "lint: FAIL $*" >&2
    failed=1
}

POSIX_SCRIPTS=(init/init test/selftest.sh openwrt/cpe-agent/files/cpe-agent.init openwrt/cpe-agent/files/uci-to-toml.sh)
BASH_SCRIPTS=(build.sh fetch-debs.sh mkconfig.sh run.sh test.sh lint.sh)

# --- sh -n / bash -n -----------------------------------------------------------
for f in "${POSIX_SCRIPTS[@]}"; do
    if sh -n "$f"; then ok "sh -n $f"; else bad "sh -n $f"; fi
done
for f in "${BASH_SCRIPTS[@]}"; do
    if bash -n "$f"; then ok "bash -n $f"; else bad "bash -n $f"; fi
done
DEBS="${CPE_IMAGE_DEBS:-${XDG_CACHE_HOME:-$HOME/.cache}/cpe-image/debs}"
busybox_deb="$(compgen -G "$DEBS/busybox-static_*_arm64.deb" | head -1 || true)"
if [ -n "$busybox_deb" ] && command -v qemu-aarch64-static >/dev/null 2>&1; then
    dpkg-deb -x "$busybox_deb" "$SCRATCH/busybox"
    for f in init/init test/selftest.sh; do
        if qemu-aarch64-static "$SCRATCH/busybox/bin/busybox" ash -n "$f"; then
            ok "busybox ash -n $f (the image's shell)"
        else
            bad "busybox ash -n $f"
        fi
    done
else
    echo "lint: skip busybox ash -n (no cached arm64 busybox or no qemu-aarch64-static; images/fetch-debs.sh)"
fi

# --- shellcheck --------------------------------------------------------------------
if command -v shellcheck >/dev/null 2>&1; then
    # POSIX sh with busybox's extras (sleep 0.2, local) is what runs on the devices.
    if shellcheck -s sh -e SC3043 "${POSIX_SCRIPTS[@]}"; then ok "shellcheck ${POSIX_SCRIPTS[*]}"; else bad "shellcheck (sh)"; fi
    if shellcheck -x "${BASH_SCRIPTS[@]}"; then ok "shellcheck ${BASH_SCRIPTS[*]}"; else bad "shellcheck (bash)"; fi
else
    echo "lint: skip shellcheck (not installed; scripts/setup.sh installs it)"
fi

# --- systemd units -----------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir -p "$SCRATCH/units"
    printf '#!/bin/sh\n' >"$SCRATCH/cpe-agent"
    chmod +x "$SCRATCH/cpe-agent"
    for unit in systemd/*.service; do
        sed "s#/usr/bin/cpe-agent#$SCRATCH/cpe-agent#g" "$unit" >"$SCRATCH/units/${unit##*/}"
    done
    # verify exits 0 on unknown keys; any message is a finding.
    out="$(systemd-analyze verify "$SCRATCH"/units/*.service 2>&1)" && rc=0 || rc=$?
    if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
        ok "systemd-analyze verify $(echo systemd/*.service)"
    else
        bad "systemd-analyze verify (exit $rc): $out"
    fi
else
    echo "lint: skip systemd-analyze (not installed)"
fi

# --- OpenWrt package ---------------------------------------------------------------
PKG=openwrt/cpe-agent
# shellcheck disable=SC2016 # literal Makefile text
for needle in 'include $(TOPDIR)/rules.mk' 'include $(INCLUDE_DIR)/package.mk' 'PKG_NAME:=cpe-agent' \
    'PKG_VERSION:=' 'PKG_RELEASE:=' 'PKG_LICENSE:=' 'define Package/cpe-agent' 'define Package/cpe-agent/install' \
    '$(eval $(call BuildPackage,cpe-agent))'; do
    grep -qF "$needle" "$PKG/Makefile" || bad "$PKG/Makefile lacks: $needle"
done
for needle in 'USE_PROCD=1' 'start_service()' 'procd_open_instance' 'procd_set_param respawn' 'boot()'; do
    grep -qF "$needle" "$PKG/files/cpe-agent.init" || bad "$PKG/files/cpe-agent.init lacks: $needle"
done
# apply-state comes before the instance is opened.
awk '/^start_service\(\)/ { s = 1 } s && /apply_state/ { a = NR } s && /procd_open_instance/ { o = NR; exit }
     END { exit !(a && o && a < o) }' "$PKG/files/cpe-agent.init" ||
    bad "cpe-agent.init: start_service must run apply_state before procd_open_instance"
if command -v make >/dev/null 2>&1; then
    stub="$SCRATCH/openwrt"
    mkdir -p "$stub/include" "$stub/root" "$stub/build"
    printf '#!/bin/sh\n' >"$stub/cpe-agent"
    chmod +x "$stub/cpe-agent"
    cat >"$stub/rules.mk" <<'MK'
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_CONF:=install -m0600
CP:=cp -fpR
MK
    cat >"$stub/include/package.mk" <<'MK'
PKG_BUILD_DIR:=$(STUB)/build
define BuildPackage
$$(if $$(Package/$(1)),,$$(error Package/$(1) is not defined))
$$(if $$(Package/$(1)/description),,$$(error Package/$(1)/description is not defined))
$$(if $$(Package/$(1)/install),,$$(error Package/$(1)/install is not defined))
stub-build:
	$$(Build/Prepare)
	$$(Build/Compile)
	$$(call Package/$(1)/install,$(STUB)/root)
endef
MK
    if make -s -C "$PKG" TOPDIR="$stub" INCLUDE_DIR="$stub/include" STUB="$stub" ARCH=aarch64 \
        CPE_AGENT_BIN="$stub/cpe-agent" stub-build >"$stub/make.log" 2>&1; then
        missing=()
        for f in usr/bin/cpe-agent etc/init.d/cpe-agent etc/config/cpe-agent etc/cpe-agent/agent.toml \
            usr/libexec/cpe-agent/uci-to-toml; do
            [ -e "$stub/root/$f" ] || missing+=("$f")
        done
        if [ "${#missing[@]}" -eq 0 ]; then
            ok "OpenWrt Makefile: install recipe builds the package tree"
        else
            bad "OpenWrt Makefile: package tree lacks ${missing[*]}"
        fi
    else
        bad "OpenWrt Makefile: $(cat "$stub/make.log")"
    fi
else
    echo "lint: skip OpenWrt make run (make not installed)"
fi

# --- UCI -> TOML ---------------------------------------------------------------------
# A stub `uci -q get cpe-agent.SECTION.OPTION` that reads the shipped UCI file
# (options print their value, lists their values space-separated).
mkdir -p "$SCRATCH/bin"
cat >"$SCRATCH/bin/uci" <<'SH'
#!/bin/sh
[ "$1" = -q ] && shift
[ "$1" = get ] || exit 1
key=${2#cpe-agent.}
awk -v section="${key%%.*}" -v option="${key#*.}" '
    { gsub(/^[ \t]+/, "") }
    $1 == "config" { name = $3; gsub(/'\''/, "", name); inside = (name == section); next }
    inside && ($1 == "option" || $1 == "list") && $2 == option {
        v = $0; sub(/^[a-z]+[ \t]+[^ \t]+[ \t]+/, "", v); gsub(/'\''/, "", v)
        out = out (found ? " " : "") v; found = 1
    }
    END { if (!found) exit 1; print out }' "$UCI_FILE"
SH
chmod +x "$SCRATCH/bin/uci"
# The shipped example has no order key: add one to exercise the [orders] mapping.
{
    cat "$PKG/files/cpe-agent.config"
    printf "\tlist key '%s'\n" "$(printf 'ab%.0s' $(seq 32))"
} >"$SCRATCH/uci-config"
if toml="$(PATH="$SCRATCH/bin:$PATH" UCI_FILE="$SCRATCH/uci-config" sh "$PKG/files/uci-to-toml.sh")"; then
    if command -v python3 >/dev/null 2>&1 && python3 -c 'import tomllib' 2>/dev/null; then
        if printf '%s\n' "$toml" | python3 -c '
import sys, tomllib
c = tomllib.loads(sys.stdin.read())
assert c["institution_code"] == "1312345678", c
assert c["state_dir"] == "/etc/cpe-agent/state", c
assert c["trust_anchors"] == ["/etc/cpe-agent/ca.pem"], c
assert c["carrier"] == {"url": "https://carrier.example.jp:8443", "ca": "/etc/cpe-agent/carrier-ca.pem", "interval_s": 60}, c
assert c["system"] == {"primary_uplink": "wan", "backup_uplink": "wwan0"}, c
assert c["network"] == {"lan": ["br-lan"]}, c
assert c["orders"] == {"keys": ["ab" * 32]}, c
'; then
            ok "uci-to-toml: shipped UCI config maps to the expected TOML"
        else
            bad "uci-to-toml: unexpected TOML:"$'\n'"$toml"
        fi
    else
        echo "lint: skip TOML check of uci-to-toml output (python3 tomllib not available)"
    fi
else
    bad "uci-to-toml.sh failed"
fi

if [ "$failed" -ne 0 ]; then
    echo "images/lint.sh: FAILED" >&2
    exit 1
fi
echo "images/lint.sh: all checks passed"
