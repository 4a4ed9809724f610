#!/usr/bin/env bash
# Prepares a host for the native provider and its tests (idempotent; fresh
# Debian 12, as root): installs the OCI runtime (crun, plus runc and gVisor's
# runsc as alternatives), builds the static in-sandbox agent and installs it where the
# provider looks for it, and builds the busybox test rootfs.
#
# Usage: scripts/ci/native.sh
# Env:   CARGO_TARGET_DIR (default: target)  STACYVM_AGENT_DEST (default:
#        /usr/local/lib/stacyvm/stacyvm-agent)  STACYVM_TEST_ROOTFS_TAR
#        (default: ${TMPDIR:-/tmp}/stacyvm-test-busybox.tar)
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v crun >/dev/null || need+=(crun)
command -v runc >/dev/null || need+=(runc)
command -v runsc >/dev/null || need+=(runsc)
command -v file >/dev/null || need+=(file)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
grep -qw overlay /proc/filesystems || modprobe overlay || true

# The agent runs in any image (busybox, musl, glibc), so it is linked
# statically; only the gnu target is assumed, hence crt-static on it. A
# separate target dir keeps this build from being overwritten by (or
# overwriting) ordinary dynamic builds of the workspace.
target=${CARGO_TARGET_DIR:-target}
cargo rustc -q -p stacyvm-agent --release --bin stacyvm-agent \
  --target-dir "$target/agent-static" -- -C target-feature=+crt-static
bin="$target/agent-static/release/stacyvm-agent"
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "native.sh: $bin is not statically linked" >&2
  exit 1
fi
dest=${STACYVM_AGENT_DEST:-/usr/local/lib/stacyvm/stacyvm-agent}
install -D -m 0755 "$bin" "$dest.tmp" && mv "$dest.tmp" "$dest"

scripts/ci/busybox-rootfs.sh "${STACYVM_TEST_ROOTFS_TAR:-${TMPDIR:-/tmp}/stacyvm-test-busybox.tar}"
echo "native.sh: crun $(crun --version | head -1 | awk '{print $3}'), agent at $dest"
