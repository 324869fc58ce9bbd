#!/usr/bin/env bash
# Makes the config drive of a unit: an ext2 image (label cpe-config) holding
# the files of DIR at its root, as a carrier provisions a shipped device.
#
#   bash images/mkconfig.sh DIR OUT.img
#
# DIR holds: agent.toml (+ agent.d/*.toml), the CA bundle(s) agent.toml names,
# identity.p12 + identity.pass (the institution certificate, imported on first
# boot), optionally lan-up.sh (brings up the LAN after the order state is
# enforced) and selftest.sh (a test hook). The image mounts the drive
# read-only at /etc/cpe-agent, so relative paths in agent.toml resolve there.
# Needs mke2fs (e2fsprogs >= 1.43 for -d); no root.
set -euo pipefail

if [ "$#" -ne 2 ] || [ ! -d "$1" ]; then
    echo "usage: bash images/mkconfig.sh DIR OUT.img" >&2
    exit 2
fi
DIR="$1"
OUT="$2"
MKE2FS="$(command -v mke2fs || echo /usr/sbin/mke2fs)"
[ -x "$MKE2FS" ] || {
    echo "mkconfig.sh: mke2fs not found; install e2fsprogs" >&2
    exit 2
}
[ -f "$DIR/agent.toml" ] || {
    echo "mkconfig.sh: $DIR/agent.toml is missing; the agent cannot start without it" >&2
    exit 1
}
# Contents plus room for filesystem metadata; at least 1 MiB.
kib=$(($(du -sk "$DIR" | cut -f1) * 2 + 512))
[ "$kib" -ge 1024 ] || kib=1024
rm -f "$OUT"
"$MKE2FS" -q -F -t ext2 -b 1024 -m 0 -L cpe-config -E root_owner=0:0 -d "$DIR" "$OUT" "${kib}k"
echo "mkconfig.sh: $OUT (${kib} KiB) from $DIR"
