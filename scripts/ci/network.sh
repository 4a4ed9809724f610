#!/usr/bin/env bash
# The fake internet of the egress tests (idempotent; fresh Debian 12, as
# root): a network namespace `stacyvm-fakenet` joined to the host by a veth
# pair (`svfake0`, 198.18.0.254/24 on the host), holding the only servers
# the tests may reach:
#   198.18.0.1:80, 198.18.0.1:8080, 198.18.0.2:80   HTTP (busybox httpd),
#     each page naming its address and port
#   198.18.0.1:443   HTTPS (openssl s_server, self-signed): SNI allowed.test
#     gets its own certificate, anything else the other.test one
#   198.18.0.3:53    DNS (dnsmasq, forwards nothing): allowed.test and
#     *.allowed.test -> 198.18.0.1, other.test -> 198.18.0.2
# 198.18.0.0/15 is the benchmarking range (RFC 2544): never routed on the
# internet. No server here does reverse-DNS lookups.
#
# The tests themselves install, while they run, an nftables rule that drops
# and counts every packet of a sandbox (or of the egress proxy on its
# behalf) headed for the machine's real interfaces, and fail if it counts
# anything (crates/stacyvm-providers/tests/native_network.rs).
#
# Usage: scripts/ci/network.sh
set -euo pipefail

ns=stacyvm-fakenet
state=/var/lib/stacyvm-fakenet

need=()
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v openssl >/dev/null || need+=(openssl)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
busybox=$(command -v busybox)

if [ ! -e "/run/netns/$ns" ]; then
  ip netns add "$ns"
fi
if [ ! -e /sys/class/net/svfake0 ]; then
  ip link add svfake0 type veth peer name eth0 netns "$ns"
  ip link set svfake0 addrgenmode none
  ip addr add 198.18.0.254/24 dev svfake0
  ip link set svfake0 up
  ip -n "$ns" link set eth0 addrgenmode none
  for a in 198.18.0.1 198.18.0.2 198.18.0.3; do
    ip -n "$ns" addr add "$a/24" dev eth0
  done
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
fi

# Servers: restarted on every run, so their content is this script's.
ip netns pids "$ns" | xargs -r kill 2>/dev/null || true
sleep 0.2
serve_http() { # address port
  local www="$state/www-$1-$2"
  mkdir -p "$www"
  echo "fake internet $1:$2" >"$www/index.html"
  ip netns exec "$ns" "$busybox" httpd -p "$1:$2" -h "$www"
}
serve_http 198.18.0.1 80
serve_http 198.18.0.1 8080
serve_http 198.18.0.2 80

mkdir -p "$state/tls"
for name in allowed.test other.test; do
  if [ ! -f "$state/tls/$name.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=$name" -addext "subjectAltName=DNS:$name" \
      -keyout "$state/tls/$name.key" -out "$state/tls/$name.pem" 2>/dev/null
  fi
done
ip netns exec "$ns" setsid openssl s_server -quiet -www -accept 198.18.0.1:443 \
  -cert "$state/tls/other.test.pem" -key "$state/tls/other.test.key" \
  -servername allowed.test \
  -cert2 "$state/tls/allowed.test.pem" -key2 "$state/tls/allowed.test.key" \
  </dev/null >"$state/s_server.log" 2>&1 &

ip netns exec "$ns" dnsmasq --conf-file=/dev/null --no-resolv --no-hosts \
  --no-poll --bind-interfaces --listen-address=198.18.0.3 --port=53 \
  --user=root --pid-file="$state/dnsmasq.pid" \
  --address=/allowed.test/198.18.0.1 --address=/other.test/198.18.0.2

# Ready when every server answers from the host.
for url in http://198.18.0.1/ http://198.18.0.1:8080/ http://198.18.0.2/; do
  ok=
  for _ in $(seq 50); do
    if curl -fsS --noproxy "*" --max-time 1 -o /dev/null "$url" 2>/dev/null; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "network.sh: $url does not answer" >&2; exit 1; }
done
for _ in $(seq 50); do
  if curl -ks --noproxy "*" --max-time 1 --resolve allowed.test:443:198.18.0.1 \
      -o /dev/null https://allowed.test/; then break; fi
  sleep 0.1
done
curl -ks --noproxy "*" --max-time 2 --resolve allowed.test:443:198.18.0.1 \
  -o /dev/null https://allowed.test/ || { echo "network.sh: HTTPS does not answer" >&2; exit 1; }
ok=
for _ in $(seq 50); do
  if { ip netns exec "$ns" "$busybox" nslookup -type=a allowed.test 198.18.0.3 2>/dev/null || true; } \
      | grep -q 'Address: 198.18.0.1'; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { echo "network.sh: DNS does not answer" >&2; exit 1; }
echo "network.sh: fake internet up in netns $ns"
