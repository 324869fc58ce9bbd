#!/usr/bin/env bash
# Boots the firmware image under qemu-system-aarch64 (TCG, -M virt) with its
# two disks, the serial console on stdio and user-mode networking: the guest
# reaches the host's loopback as 10.0.2.2.
#
#   bash images/run.sh CONFIG.img STATE.img      # Ctrl-C stops the VM
#
# CONFIG.img: from images/mkconfig.sh (attached read-only, serial cpe-config).
# STATE.img: the persistent state disk (serial cpe-state); a blank file (e.g.
# `truncate -s 32M state.img`) is formatted on first boot.
# Environment: CPE_IMAGE_DIR (default target/image), CPE_VM_APPEND (extra
# kernel arguments), CPE_VM_MEMORY (MiB, default 256). A guest reboot ends
# qemu (-no-reboot): run it again with the same disks to boot again.
# The tests/tests/image_qemu.rs end-to-end test boots the image through this script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${CPE_IMAGE_DIR:-$ROOT/target/image}"
if [ "$#" -ne 2 ]; then
    echo "usage: bash images/run.sh CONFIG.img STATE.img" >&2
    exit 2
fi
for f in "$IMAGE/vmlinuz" "$IMAGE/initramfs.cpio.gz" "$1" "$2"; do
    [ -f "$f" ] || {
        echo "run.sh: $f is missing (build the image with images/build.sh)" >&2
        exit 2
    }
done

exec qemu-system-aarch64 \
    -M virt -cpu cortex-a53 -m "${CPE_VM_MEMORY:-256}" -smp 1 \
    -nographic -monitor none -serial stdio -no-reboot \
    -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initramfs.cpio.gz" \
    -append "console=ttyAMA0 panic=5 ${CPE_VM_APPEND:-}" \
    -drive "if=none,id=config,file=$1,format=raw,readonly=on" \
    -device virtio-blk-pci,drive=config,serial=cpe-config \
    -drive "if=none,id=state,file=$2,format=raw" \
    -device virtio-blk-pci,drive=state,serial=cpe-state \
    -netdev user,id=wan -device virtio-net-pci,netdev=wan \
    -device virtio-rng-pci
