#!/usr/bin/env bash
# Installs Prometheus (server + promtool), plus curl and python3 that
# scripts/ci/prom-scrape-check.sh uses, for the observability tests.
#
# Idempotent; works on a fresh Debian 12 as root. It only installs the
# package: the Debian service is stopped and disabled so nothing scrapes or
# listens globally — tests start their own Prometheus on loopback through
# scripts/ci/prom-scrape-check.sh.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 \
    && command -v curl >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1; then
    echo "prometheus.sh: promtool, prometheus, curl and python3 already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Other jobs may hold the dpkg lock on a shared machine: wait for it.
apt_opts=(-o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
apt-get -o DPkg::Lock::Timeout=600 update -qq
# policy-rc.d keeps the package's post-install from starting the daemon.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
apt-get install "${apt_opts[@]}" prometheus curl python3 ca-certificates
if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi

# Never leave a global Prometheus running (no systemd in CI containers:
# ignore failures of these).
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

promtool --version | head -1
