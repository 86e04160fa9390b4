#!/usr/bin/env bash
# fresh_machine_test.sh — prove the fresh-machine path the way CI sees it: a clean Debian 12 root
# made by debootstrap (from Debian's packages), a fresh clone of this repository's HEAD with
# ../shared beside it, and `scripts/test.sh` run inside it with CUDA off. Prints the time of each
# step. Needs root (debootstrap, chroot, mounts) and access to the Debian mirror.
#
#   scripts/fresh_machine_test.sh [--root DIR] [--reuse-root]
#
#   --root DIR      where the Debian root goes (default /var/tmp/vlmserve-fresh-root; ~1.5 GB)
#   --reuse-root    keep an existing debootstrapped root (skips debootstrap, still a fresh clone);
#                   by default the root is made anew so nothing from an earlier run remains
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOTFS=/var/tmp/vlmserve-fresh-root
REUSE=0
MIRROR=http://deb.debian.org/debian
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) ROOTFS="$2"; shift 2 ;;
    --reuse-root) REUSE=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh_machine_test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "fresh_machine_test.sh: run as root (debootstrap and chroot need it)" >&2; exit 1; }
T0=$(date +%s)
step() { printf '\n[fresh %4ds] %s\n' $(( $(date +%s) - T0 )) "$*"; }

if ! command -v debootstrap >/dev/null; then
  step "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
fi

cleanup() {
  for m in dev/pts dev proc sys; do mountpoint -q "$ROOTFS/$m" && umount -l "$ROOTFS/$m"; done
  return 0
}
trap cleanup EXIT

if [[ $REUSE -eq 0 || ! -e "$ROOTFS/.vlmserve-debootstrap-done" ]]; then
  cleanup
  rm -rf "$ROOTFS"
  step "debootstrap bookworm (minbase) into $ROOTFS"
  debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" > /tmp/vlmserve-debootstrap.log 2>&1 ||
    { tail -20 /tmp/vlmserve-debootstrap.log; exit 1; }
  cat > "$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  touch "$ROOTFS/.vlmserve-debootstrap-done"
fi

step "mounting /proc /sys /dev and copying resolv.conf"
mount -t proc proc "$ROOTFS/proc"
mount -t sysfs sys "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

step "fresh clone of $(git -C "$REPO" rev-parse --short HEAD) (committed state only) + ../shared"
rm -rf "$ROOTFS/src"
mkdir -p "$ROOTFS/src"
git clone -q "$REPO" "$ROOTFS/src/vlmserve"
if [[ -d "$REPO/../shared" ]]; then cp -r "$REPO/../shared" "$ROOTFS/src/shared"; fi

step "scripts/test.sh inside the clean root (CUDA off)"
T_TEST=$(date +%s)
chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 VLMSERVE_CUDA=OFF bash -c 'cd /src/vlmserve && scripts/test.sh'
step "PASS: test.sh took $(( $(date +%s) - T_TEST ))s inside the fresh root; $(( $(date +%s) - T0 ))s in all"
