#!/usr/bin/env bash
# Local OCI registries and test images for the native image store's tests.
# Idempotent; for a fresh Debian 12 as root (CI=true or not). It:
#   - installs docker-registry, skopeo, umoci, apache2-utils (htpasswd),
#     busybox-static (and mmdebstrap for the Debian image: with CI set, or
#     STACYVM_CI_DEBIAN=1; STACYVM_CI_DEBIAN=0 opts out);
#   - runs a plain registry on 127.0.0.1:5000 and one with htpasswd basic
#     auth on 127.0.0.1:5001 (user stacyvm, password below);
#   - builds test images in an OCI layout with umoci and pushes them with
#     skopeo to both registries:
#       stacyvm-test/busybox:latest        busybox-static rootfs, one layer
#       stacyvm-test/layers:latest         busybox + fixtures layer + a layer
#                                          with a whiteout and an opaque dir
#       stacyvm-test/layers-docker:latest  same, as Docker v2 schema 2
#       stacyvm-test/debian:bookworm       mmdebstrap minbase (CI, or opt-in)
#   - writes the test environment to $STATE/registry.env (source it).
# Usage: scripts/ci/registry.sh            then: . /var/lib/stacyvm-ci/registry.env
set -euo pipefail

STATE=${STACYVM_CI_STATE:-/var/lib/stacyvm-ci}
# The Debian image takes a minute or two (mmdebstrap from the Debian
# mirror): built in CI, opt-in elsewhere.
if [ -n "${CI:-}" ]; then DEBIAN=${STACYVM_CI_DEBIAN:-1}; else DEBIAN=${STACYVM_CI_DEBIAN:-0}; fi
IMAGES=$STATE/images
STAMP_VERSION=3
AUTH_USER=stacyvm
AUTH_PASS=stacyvm-ci-secret
here=$(cd "$(dirname "$0")" && pwd)

log() { echo "registry.sh: $*" >&2; }

install_packages() {
  local want=(docker-registry skopeo umoci apache2-utils busybox-static curl)
  [ "$DEBIAN" = 1 ] && want+=(mmdebstrap)
  local missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# start_registry PORT [htpasswd-file]
start_registry() {
  local port=$1 htpasswd=${2:-}
  local dir=$STATE/registry-$port conf=$STATE/registry-$port.yml
  mkdir -p "$dir"
  {
    echo "version: 0.1"
    echo "log: {level: warn}"
    echo "storage:"
    echo "  filesystem: {rootdirectory: $dir}"
    echo "  delete: {enabled: true}"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    if [ -n "$htpasswd" ]; then
      echo "auth:"
      echo "  htpasswd: {realm: stacyvm-ci, path: $htpasswd}"
    fi
  } >"$conf"
  if curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" | grep -qE '200|401'; then
    return 0
  fi
  log "starting registry on 127.0.0.1:$port"
  setsid nohup docker-registry serve "$conf" >"$STATE/registry-$port.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do
    if curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" | grep -qE '200|401'; then
      return 0
    fi
    sleep 0.2
  done
  log "registry on port $port did not start; log:"
  cat "$STATE/registry-$port.log" >&2
  exit 1
}

# The fixtures layer: modes, owners, links, files the next layer deletes.
make_fixtures_tar() {
  local out=$1 d
  d=$(mktemp -d)
  mkdir -p "$d/data" "$d/opaque/sub" "$d/perms"
  echo removed >"$d/data/removed.txt"
  echo kept >"$d/data/kept.txt"
  echo old >"$d/opaque/old.txt"
  echo old2 >"$d/opaque/sub/old2.txt"
  echo owned >"$d/perms/owned"
  chown 1000:1001 "$d/perms/owned"
  chmod 0640 "$d/perms/owned"
  echo suid >"$d/perms/setuid"
  chmod 4755 "$d/perms/setuid"
  ln -s owned "$d/perms/link"
  ln "$d/perms/owned" "$d/perms/hard"
  mkdir -m 1777 "$d/perms/sticky"
  tar --numeric-owner -C "$d" -cf "$out" data opaque perms
  rm -rf "$d"
}

# The whiteout layer: deletes a file, makes a directory opaque, adds a file.
make_whiteout_tar() {
  local out=$1 d
  d=$(mktemp -d)
  mkdir -p "$d/data" "$d/opaque"
  : >"$d/data/.wh.removed.txt"
  : >"$d/opaque/.wh..wh..opq"
  echo new >"$d/opaque/new.txt"
  tar --numeric-owner -C "$d" -cf "$out" data opaque
  rm -rf "$d"
}

build_layout() {
  local layout=$IMAGES/oci work
  if [ -f "$IMAGES/stamp" ] && [ "$(cat "$IMAGES/stamp")" = "$STAMP_VERSION" ]; then
    return 0
  fi
  log "building test images in $IMAGES"
  rm -rf "$IMAGES"
  mkdir -p "$IMAGES"
  work=$(mktemp -d)
  "$here/busybox-rootfs.sh" "$IMAGES/busybox-rootfs.tar"
  make_fixtures_tar "$work/fixtures.tar"
  make_whiteout_tar "$work/whiteout.tar"
  local tmp_layout=$work/oci
  umoci init --layout "$tmp_layout"
  local env=(--config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

  umoci new --image "$tmp_layout:busybox"
  umoci raw add-layer --image "$tmp_layout:busybox" "$IMAGES/busybox-rootfs.tar"
  umoci config --image "$tmp_layout:busybox" "${env[@]}" --config.cmd /bin/sh

  umoci new --image "$tmp_layout:layers"
  umoci raw add-layer --image "$tmp_layout:layers" "$IMAGES/busybox-rootfs.tar"
  umoci raw add-layer --image "$tmp_layout:layers" "$work/fixtures.tar"
  umoci raw add-layer --image "$tmp_layout:layers" "$work/whiteout.tar"
  umoci config --image "$tmp_layout:layers" "${env[@]}" --config.env STACYVM_TEST=1 \
    --config.cmd /bin/sh --config.cmd -c --config.cmd "echo hi" \
    --config.entrypoint /bin/env --config.workingdir /data --config.user 1000:1001

  umoci gc --layout "$tmp_layout"
  mv "$tmp_layout" "$layout"
  rm -rf "$work"
  echo "$STAMP_VERSION" >"$IMAGES/stamp"
  rm -f "$STATE/pushed-"*
}

# Optional (STACYVM_CI_DEBIAN=1): a Debian minbase, in its own layout so
# turning it on does not rebuild the others. Takes a few minutes.
build_debian() {
  local layout=$IMAGES/oci-debian work
  [ -f "$layout/index.json" ] && return 0
  log "building debian minbase with mmdebstrap (slow)"
  work=$(mktemp -d)
  mmdebstrap --quiet --variant=minbase bookworm "$work/debian.tar"
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:debian"
  umoci raw add-layer --image "$work/oci:debian" "$work/debian.tar"
  umoci config --image "$work/oci:debian" \
    --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --config.cmd /bin/bash
  umoci gc --layout "$work/oci"
  mv "$work/oci" "$layout"
  rm -rf "$work"
}

# push LAYOUT:TAG REPO:TAG [extra skopeo args]
push() {
  local tag=$1 dest=$2
  shift 2
  for port in 5000 5001; do
    local stamp=$STATE/pushed-$port-${dest//[\/:]/_}
    [ -f "$stamp" ] && continue
    local creds=()
    [ "$port" = 5001 ] && creds=(--dest-creds "$AUTH_USER:$AUTH_PASS")
    skopeo copy --quiet --dest-tls-verify=false "${creds[@]}" "$@" \
      "oci:$tag" "docker://127.0.0.1:$port/$dest"
    touch "$stamp"
  done
}

main() {
  mkdir -p "$STATE"
  install_packages
  if [ ! -s "$STATE/htpasswd" ]; then
    htpasswd -Bbn "$AUTH_USER" "$AUTH_PASS" >"$STATE/htpasswd"
  fi
  start_registry 5000
  start_registry 5001 "$STATE/htpasswd"
  build_layout
  # A registry restarted with fresh storage forgets what we pushed.
  if ! skopeo inspect --tls-verify=false "docker://127.0.0.1:5000/stacyvm-test/busybox:latest" >/dev/null 2>&1; then
    rm -f "$STATE/pushed-"*
  fi
  push "$IMAGES/oci:busybox" stacyvm-test/busybox:latest
  push "$IMAGES/oci:layers" stacyvm-test/layers:latest
  push "$IMAGES/oci:layers" stacyvm-test/layers-docker:latest --format v2s2
  if [ "$DEBIAN" = 1 ]; then
    build_debian
    push "$IMAGES/oci-debian:debian" stacyvm-test/debian:bookworm
  fi
  cat >"$STATE/registry.env" <<EOF
export STACYVM_TEST_REGISTRY=127.0.0.1:5000
export STACYVM_TEST_REGISTRY_AUTH=127.0.0.1:5001
export STACYVM_TEST_REGISTRY_USER=$AUTH_USER
export STACYVM_TEST_REGISTRY_PASSWORD=$AUTH_PASS
export STACYVM_TEST_IMAGES=$IMAGES
export STACYVM_TEST_DEBIAN=$DEBIAN
EOF
  log "ready; environment in $STATE/registry.env"
}

main "$@"
