#!/usr/bin/env bash
# Builds a minimal busybox-static root filesystem tarball, the smallest test
# image StacyVM's providers use (no image can be pulled from Docker Hub here).
# Usage: scripts/ci/busybox-rootfs.sh OUT.tar   (idempotent; needs root for apt)
set -euo pipefail
out=${1:?usage: busybox-rootfs.sh OUT.tar}
if [ -s "$out" ]; then exit 0; fi
if [ ! -x /bin/busybox ] || ! /bin/busybox --help 2>&1 | grep -q static; then
  if ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,etc,tmp,proc,sys,dev,root,home,var,workspace,usr/bin,usr/sbin}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo sandbox >"$root/etc/hostname"
mkdir -p "$(dirname "$out")"
tar --numeric-owner -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
