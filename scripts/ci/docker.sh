#!/usr/bin/env bash
# Sets up what the Docker provider's tests need, on a fresh Debian 12 as root:
# Debian's docker.io and gVisor's runsc, a running dockerd (no systemd here),
# and the local test image stacyvm-test/busybox:latest (nothing can be pulled
# from Docker Hub on this network).
# Usage: scripts/ci/docker.sh          (idempotent; safe to run again)
# Env:   STACYVM_DOCKERD_LOG     dockerd log file (default /var/log/stacyvm-dockerd.log)
#        STACYVM_BUSYBOX_ROOTFS  busybox rootfs tarball to import (built if missing;
#                                default /var/tmp/stacyvm-busybox-rootfs.tar)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log=${STACYVM_DOCKERD_LOG:-/var/log/stacyvm-dockerd.log}
image=stacyvm-test/busybox:latest

# Debian's client, not another one that may be first on PATH.
docker=/usr/bin/docker

need=()
dpkg -s docker.io >/dev/null 2>&1 || need+=(docker.io)
# gVisor is packaged in Debian 12 (bookworm) as `runsc`.
dpkg -s runsc >/dev/null 2>&1 || need+=(runsc)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Register gVisor. `--network=none`: runsc's own netstack cannot be set up
# inside this kind of host (and sandboxes have no network by default anyway).
mkdir -p /etc/docker
want='{
  "runtimes": {
    "runsc": { "path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"] }
  }
}'
if [ ! -x /usr/bin/runsc ]; then want='{}'; fi
if [ "$(cat /etc/docker/daemon.json 2>/dev/null)" != "$want" ]; then
  echo "$want" >/etc/docker/daemon.json
  # A running daemon picks up new runtimes on SIGHUP.
  if pid=$(cat /var/run/docker.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
    kill -HUP "$pid"
    sleep 1
  fi
fi

if ! $docker info >/dev/null 2>&1; then
  # This machine has cgroup v1 controllers with a cgroup2 hierarchy only at
  # /sys/fs/cgroup/unified (hybrid): dockerd's default cgroupfs driver works
  # with that; systemd is not running so its cgroup driver cannot be used.
  # iptables/bridge are not needed (sandboxes run with network "none"), and
  # setting them up fails in some containers, so they are disabled.
  # Stale pid files from a daemon that was killed: dockerd would take a
  # reused pid for a live containerd and wait for it forever.
  rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
  nohup /usr/sbin/dockerd \
    --exec-opt native.cgroupdriver=cgroupfs \
    --iptables=false --ip6tables=false --bridge=none \
    >>"$log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    $docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! $docker info >/dev/null 2>&1; then
    echo "dockerd did not come up; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
fi

if ! $docker image inspect "$image" >/dev/null 2>&1; then
  tarball=${STACYVM_BUSYBOX_ROOTFS:-/var/tmp/stacyvm-busybox-rootfs.tar}
  "$here/busybox-rootfs.sh" "$tarball"
  $docker import \
    --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$image" >/dev/null
fi

echo "docker ready: $($docker version --format '{{.Server.Version}}'), runtimes: $($docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}'), image $image"
